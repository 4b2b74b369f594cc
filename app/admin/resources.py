"""Resource declarations: presentation and policy over catalog tables, checked at start (RES-1, RES-2)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from app.admin import types
from app.admin.joins import Link, ManyToMany, resolve
from app.db.catalog import (
    INTEGER_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    TIME_TYPES,
    Column,
    Table,
    split_name,
)
from app.errors import KeelError
from app.names import RESERVED_SLUGS, slug_problem, slugify

CRUD_ACTIONS = ("view", "add", "change", "delete")
# Which built-in groups get which actions on a resource the first time it appears, unless the
# declaration says otherwise (`default_access=`): `"*"` is every action, declared ones included.
DEFAULT_GROUPS = ("administrator", "editor", "viewer")
DEFAULT_ACCESS: Mapping[str, tuple[str, ...]] = {
    "administrator": ("*",),
    "editor": ("view", "add", "change"),
    "viewer": ("view",),
}
FILTERABLE = NUMBER_TYPES | TIME_TYPES | {"boolean"}
DISPLAY_CANDIDATES = ("name", "title", "label", "email", "code")
# Declared number formats for list cells (`formats=`): a kind and an optional argument.
FORMATS = ("money", "percent", "integer", "decimal")
BADGE_TONES = ("neutral", "brand", "success", "warning", "danger", "info")
LIST_PARAMETERS = frozenset({"q", "o", "cursor", "last", "per_page", "format"})  # list_params


def default_slug(table: str) -> str:
    """The URL name of a declared table: `customers` → customers, `billing.invoices` →
    billing_invoices (a table outside `public` keeps its schema in the slug, so it cannot
    clash with a same-named table elsewhere and its permission names never change when one
    is added), `Kunden` → kunden, `straße` → strasse."""
    schema, bare = split_name(table)
    return slugify(bare if schema in (None, "public") else f"{schema}_{bare}")


@dataclass(frozen=True)
class Action:
    """A declared bulk action: `set_values` are written to every selected row (EDIT-8)."""

    name: str
    label: str
    set_values: Mapping[str, object] | None = None
    confirm: bool = False


@dataclass(frozen=True)
class Inline:
    """Child rows shown on the parent's edit page (EDIT-7)."""

    table: str
    fk_column: str
    list_display: tuple[str, ...] = ()
    limit: int = 20
    # Editable inlines: the rows are changed, added and deleted on the parent's form, saved
    # with it in one transaction (app/admin/inlines.py). `fields` are the inputs of each row
    # (default: `list_display` without the key); `extra` is the number of blank rows offered.
    editable: bool = False
    fields: tuple[str, ...] = ()
    extra: int = 1


@dataclass(frozen=True)
class BulkEdit:
    """Bulk edit on the list page: set `fields` on selected (or all matching) rows in one
    statement (app/admin/bulk_edit.py); more than `reauth_above` rows need the password again."""

    fields: tuple[str, ...]
    reauth_above: int = 100


@dataclass(frozen=True)
class Resource:
    """One table in the admin. Names refer to catalog columns; see docs/admin.md for each option.

    Related names are `<relation>.<column>`, where the relation is a foreign-key column with
    its `_id` suffix dropped (`customer.email` follows `customer_id`)."""

    table: str
    slug: str | None = None
    title: str | None = None
    list_display: tuple[str, ...] = ()
    list_filter: tuple[str, ...] = ()
    search_fields: tuple[str, ...] = ()
    ordering: tuple[str, ...] = ()
    list_per_page: int = 50
    readonly_fields: tuple[str, ...] = ()
    fieldsets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    help_texts: Mapping[str, str] = field(default_factory=dict)
    widgets: Mapping[str, str] = field(default_factory=dict)
    inlines: tuple[Inline, ...] = ()
    actions: tuple[Action, ...] = ()
    display_field: str | None = None
    permissions: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = False
    tsvector_field: str | None = None
    default_access: Mapping[str, tuple[str, ...]] | None = None
    # How list cells show a number: "money:EUR", "percent", "integer" or "decimal:2" (FORMATS).
    formats: Mapping[str, str] = field(default_factory=dict)
    # Badge colour per choice value: {"status": {"cancelled": "danger", ...}} (BADGE_TONES);
    # values not named here get a colour from their meaning or, failing that, their position.
    badges: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Join tables edited as a multi-select on this resource's form; None finds them in the
    # catalog (a table whose primary key is two foreign keys), () turns that off.
    many_to_many: tuple[ManyToMany, ...] | None = None
    bulk_edit: BulkEdit | None = None
    # Columns that name a row as well as its primary key (an email, a code): a CSV import
    # matches rows by them. They must be covered by one unique constraint or index.
    natural_key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Declarations are written by hand: accept lists and a bare string where a tuple is meant.
        for name in (
            "list_display",
            "list_filter",
            "search_fields",
            "ordering",
            "readonly_fields",
            "natural_key",
        ):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "inlines", tuple(self.inlines))
        object.__setattr__(self, "actions", tuple(self.actions))
        if self.many_to_many is not None:
            object.__setattr__(self, "many_to_many", tuple(self.many_to_many))
        object.__setattr__(self, "fieldsets", tuple((t, tuple(f)) for t, f in self.fieldsets))
        bare = split_name(self.table)[1]
        if self.slug is None:
            object.__setattr__(self, "slug", default_slug(self.table))
        if self.title is None:
            title = bare.replace("_", " ")
            title = title[:1].upper() + title[1:]  # "Kunden", "Order lines"
            schema = split_name(self.table)[0]
            if schema not in (None, "public"):
                title = f"{title} ({schema})"  # two schemas may hold the same name
            object.__setattr__(self, "title", title)

    @property
    def key(self) -> str:
        """The slug, typed as a str (it is always set after construction)."""
        return self.slug or self.table

    def permission(self, action: str) -> str:
        """The permission an action needs: the declared override, else `<slug>.<action>`."""
        return self.permissions.get(action) or f"{self.key}.{action}"

    @property
    def action_names(self) -> tuple[str, ...]:
        return (*CRUD_ACTIONS, *(a.name for a in self.actions))

    def default_grants(self) -> dict[str, list[str]]:
        """Built-in group → the permissions it gets when this resource first appears."""
        access = DEFAULT_ACCESS if self.default_access is None else self.default_access
        out: dict[str, list[str]] = {}
        for group, actions in access.items():
            chosen = self.action_names if "*" in actions else actions
            out[group] = sorted({self.permission(a) for a in chosen})
        return out


@dataclass(frozen=True)
class Registry:
    """The site's resources, in menu order. Built once by `register(...)`; never mutated."""

    resources: tuple[Resource, ...] = ()

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def get(self, slug: str) -> Resource | None:
        for r in self.resources:
            if r.slug == slug:
                return r
        return None

    def tables(self) -> list[str]:
        return [r.table for r in self.resources]


def register(*resources: Resource) -> Registry:
    """The site package's one call: `REGISTRY = register(Resource(...), ...)` (RES-1)."""
    seen: set[str] = set()
    for r in resources:
        if not isinstance(r, Resource):
            raise KeelError(
                f"register() got {type(r).__name__}, not a Resource",
                fix="pass Resource(...) declarations",
            )
        problem = slug_problem(r.key)
        if problem:
            raise KeelError(
                f"resource {r.table!r} cannot use the slug {r.key!r}",
                why=problem,
                fix=f'declare it with another slug=, e.g. slug="{r.key}_table"'
                if r.key in RESERVED_SLUGS
                else "declare it with a slug= of lowercase letters, digits and underscores",
            )
        if r.key in seen:
            raise KeelError(f"two resources share the slug '{r.key}'", fix="give one a slug=")
        seen.add(r.key)
        _check_default_access(r)
    return Registry(tuple(resources))


def _check_default_access(r: Resource) -> None:
    if r.default_access is None:
        return
    if not isinstance(r.default_access, Mapping):
        raise KeelError(
            f"{r.key}: default_access must be a mapping of group to actions",
            fix='write e.g. default_access={"editor": ("view", "change"), "viewer": ("view",)}',
        )
    for group, actions in r.default_access.items():
        if group not in DEFAULT_GROUPS:
            raise KeelError(
                f"{r.key}: default_access names group {group!r}",
                why=f"defaults go to the built-in groups: {', '.join(DEFAULT_GROUPS)}; grant "
                "other groups their permissions on the groups page",
                fix=f"use one of {', '.join(DEFAULT_GROUPS)}",
            )
        if isinstance(actions, str) or not all(isinstance(a, str) for a in actions):
            raise KeelError(
                f"{r.key}: default_access[{group!r}] must be a tuple of action names",
                fix=f'write e.g. "{group}": ("view",)',
            )
        unknown = [a for a in actions if a != "*" and a not in r.action_names]
        if unknown:
            raise KeelError(
                f"{r.key}: default_access[{group!r}] names unknown action {unknown[0]!r}",
                why=f"this resource's actions are {', '.join(r.action_names)}",
                fix='use one of them, or "*" for all',
            )


@dataclass(frozen=True)
class BoundResource:
    """A declaration joined to its catalog table; what every admin view works with."""

    resource: Resource
    table: Table
    related: Mapping[str, Table] = field(default_factory=dict)  # FK targets by `schema.name`
    # Why rows cannot be changed whatever the declaration says (a view, no primary key).
    read_only_reason: str | None = None
    links: tuple[Link, ...] = ()  # many-to-many relations (app/admin/m2m.py)

    @property
    def slug(self) -> str:
        return self.resource.key

    @property
    def title(self) -> str:
        return self.resource.title or self.slug

    @property
    def pk(self) -> str:
        """The (first) primary-key column; only for resources that have a key (`keyed`)."""
        return self.table.primary_key[0]

    @property
    def key(self) -> tuple[str, ...]:
        """The primary-key columns, in key order; empty for views and tables without one."""
        return self.table.primary_key

    @property
    def keyed(self) -> bool:
        return bool(self.table.primary_key)

    @property
    def composite(self) -> bool:
        return len(self.table.primary_key) > 1

    @cached_property
    def opaque_names(self) -> frozenset[str]:
        """Columns read as their text form (see app/admin/types.py)."""
        return frozenset(c.name for c in self.table.columns if types.is_opaque(c))

    @cached_property
    def offset_paging(self) -> bool:
        """Pages by position rather than by key (LIST-3's keyset needs a key whose values come
        back from a page link unchanged): resources without a key, or with an exotic one."""
        cols = [self.table.column(n) for n in self.key]
        return not cols or not all(c is not None and types.sortable(c) for c in cols)

    def column(self, name: str) -> Column | None:
        return self.table.column(name)

    def resolve_column(self, name: str) -> Column | None:
        """A column by name, or an FK column by its relation name (`customer` → `customer_id`)."""
        col = self.table.column(name)
        if col is None:
            col = self.table.column(f"{name}_id")
            if col is not None and col.fk is None:
                col = None
        return col

    def resolve_related(self, dotted: str) -> tuple[Column, Table, Column] | None:
        """`customer.email` → (bookings.customer_id, customers table, customers.email)."""
        rel, _, target_col = dotted.partition(".")
        fk_col = self.resolve_column(rel)
        if fk_col is None or fk_col.fk is None:
            return None
        target = self.related.get(fk_col.fk.target)
        col = target.column(target_col) if target else None
        return (fk_col, target, col) if target is not None and col is not None else None

    def label(self, name: str) -> str:
        if name in self.resource.labels:
            return self.resource.labels[name]
        text = name.replace("_", " ").replace(".", " ")
        if text.endswith(" id") and len(text) > 3:
            text = text[:-3]
        return text[:1].upper() + text[1:]

    @property
    def list_columns(self) -> tuple[Column, ...]:
        """`list_display` resolved; by default the key, the display field and a few more."""
        names = self.resource.list_display or self._default_list()
        return tuple(c for c in (self.resolve_column(n) for n in names) if c is not None)

    def _default_list(self) -> tuple[str, ...]:
        shown = [
            c.name
            for c in self.table.columns
            if c.type_name not in ("jsonb", "json") and not types.is_opaque(c)
        ]
        return tuple(shown[:6])

    @property
    def display_column(self) -> str:
        """How a row is named (`display_field`), else a name-like text column, else the key."""
        if self.resource.display_field:
            return self.resource.display_field
        return display_column_of(self.table)

    def permission(self, action: str) -> str:
        return self.resource.permission(action)

    @property
    def created_column(self) -> Column | None:
        col = self.table.column("created_at")
        return col if col is not None and col.type_name in TIME_TYPES else None


def display_column_of(table: Table) -> str:
    for name in DISPLAY_CANDIDATES:
        col = table.column(name)
        if col is not None and col.type_name in TEXT_TYPES:
            return name
    return table.primary_key[0] if table.primary_key else table.columns[0].name


def filter_kind(col: Column) -> str | None:
    """The filter a column gets (LIST-5), or None when its type cannot be filtered."""
    if types.is_opaque(col):
        return None
    if col.fk is not None:
        return "fk"
    if col.choices:
        return "choice"
    if col.type_name == "boolean":
        return "bool"
    if col.type_name in TIME_TYPES:
        return "date"
    if col.type_name in NUMBER_TYPES:
        return "number"
    return None


def search_kind(col: Column) -> str | None:
    """How a search word matches a column (LIST-6): substring on text, equality on integers."""
    if col.type_name in TEXT_TYPES:
        return "text"
    if col.type_name in INTEGER_TYPES:
        return "int"
    if col.type_name == "uuid":
        return "uuid"
    return None


@dataclass(frozen=True)
class Problem:
    """One finding of RES-2: which resource, which option, which name, and what is wrong."""

    level: str  # "error" | "warning"
    resource: str
    option: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.option} {self.name!r}: {self.message}"


class _Checker:
    """Walks one declaration against the catalog, collecting problems."""

    def __init__(
        self, resource: Resource, catalog: Mapping[str, Table], tables: Sequence[str] = ()
    ) -> None:
        self.r = resource
        self.catalog = catalog
        self.tables = tables  # every declared table: an editable inline's must be one
        self.problems: list[Problem] = []

    def add(self, option: str, name: str, message: str, level: str = "error") -> None:
        self.problems.append(Problem(level, self.r.key, option, str(name), message))

    def bound(self, table: Table) -> BoundResource:
        related = {}
        for fk in table.foreign_keys:
            # Keyed by `schema.name`; a catalog may also hold a target under its bare name.
            target = self.catalog.get(fk.target) or self.catalog.get(fk.target_table)
            if target is not None and target.qualified == fk.target:
                related[fk.target] = target
        why = inherent_read_only(table)
        resource = replace(self.r, read_only=True) if why and not self.r.read_only else self.r
        links: tuple[Link, ...] = ()
        if table.primary_key and len(table.primary_key) == 1:
            links, _problems = resolve(self.r.many_to_many, table, self.catalog, display_column_of)
        return BoundResource(resource, table, related, why, links)

    def column(self, b: BoundResource, option: str, name: object) -> Column | None:
        col = b.resolve_column(name) if isinstance(name, str) else None
        if col is None:
            self.add(option, str(name), f"no such column in table {b.table.name}")
        return col

    def run(self) -> list[Problem]:
        table = self.catalog.get(self.r.table)
        if table is None:
            self.add("table", self.r.table, "no such table (run `keel migrate`?)")
            return self.problems
        if table.is_partition:
            self.add(
                "table",
                self.r.table,
                "is a partition: declare its partitioned parent table instead",
                "warning",
            )
        b = self.bound(table)
        for name in self.r.list_display:
            self.column(b, "list_display", name)
        for name in self.r.list_filter:
            col = self.column(b, "list_filter", name)
            if col is not None and filter_kind(col) is None:
                self.add("list_filter", name, f"cannot filter on type {col.type_name}")
            elif col is not None and col.name in LIST_PARAMETERS:
                self.add("list_filter", name, "clashes with a list parameter; rename the column")
        for name in self.r.search_fields:
            self.search_field(b, name)
        for name in self.r.ordering:
            col = self.column(b, "ordering", str(name).removeprefix("-"))
            if col is not None and not types.sortable(col):
                self.add("ordering", name, f"cannot order by type {col.type_name}")
            elif (
                col is not None and table.leading_index(col.name) is None and col.name not in b.key
            ):
                self.add("ordering", name, "no index starts with this column", "warning")
        self.names(b)
        self.natural_key(b)
        self.inlines(b)
        self.actions(b)
        self.relations(b)
        if not 1 <= self.r.list_per_page <= 500:
            self.add("list_per_page", str(self.r.list_per_page), "must be from 1 to 500")
        return self.problems

    def search_field(self, b: BoundResource, name: str) -> None:
        if "." in name:
            found = b.resolve_related(name)
            if found is None:
                self.add("search_fields", name, "no such related column")
                return
            fk_col, target, col = found
            if b.table.leading_index(fk_col.name) is None:
                self.add("search_fields", name, f"{fk_col.name} has no index", "warning")
        else:
            maybe = self.column(b, "search_fields", name)
            if maybe is None:
                return
            col, target = maybe, b.table
        kind = search_kind(col)
        if kind is None:
            self.add("search_fields", name, f"cannot search type {col.type_name}")
        elif kind == "text" and target.trigram_index(col.name) is None:
            self.add(
                "search_fields",
                name,
                "no trigram index: searching scans the table (CREATE INDEX … USING gin "
                f"({col.name} gin_trgm_ops))",
                "warning",
            )
        elif kind != "text" and target.leading_index(col.name) is None:
            self.add("search_fields", name, "no index: searching scans the table", "warning")

    def names(self, b: BoundResource) -> None:
        for option, names in (
            ("readonly_fields", self.r.readonly_fields),
            ("labels", tuple(self.r.labels)),
            ("help_texts", tuple(self.r.help_texts)),
            ("widgets", tuple(self.r.widgets)),
            ("formats", tuple(self.r.formats)),
            ("badges", tuple(self.r.badges)),
            ("fieldsets", tuple(n for _t, fs in self.r.fieldsets for n in fs)),
        ):
            for name in names:
                self.column(b, option, name)
        if self.r.display_field is not None:
            self.column(b, "display_field", self.r.display_field)
        self.formats(b)
        if self.r.tsvector_field is not None:
            col = self.column(b, "tsvector_field", self.r.tsvector_field)
            if col is not None and col.type_name != "tsvector":
                self.add("tsvector_field", col.name, f"is {col.type_name}, not tsvector")
        known = set(CRUD_ACTIONS) | {a.name for a in self.r.actions}
        for action, perm in self.r.permissions.items():
            if action not in known:
                self.add("permissions", action, "is neither view/add/change/delete nor an action")
            if not isinstance(perm, str) or perm.count(".") != 1:
                self.add("permissions", action, "must name a permission like 'bookings.change'")

    def formats(self, b: BoundResource) -> None:
        for name, spec in self.r.formats.items():
            kind, _, arg = str(spec).partition(":")
            col = b.table.column(name)
            if kind not in FORMATS:
                self.add("formats", name, f"{spec!r} is not one of {', '.join(FORMATS)}")
            elif col is not None and col.type_name not in NUMBER_TYPES:
                self.add("formats", name, f"is {col.type_name}, not a number")
            elif kind == "money" and arg and not (len(arg) == 3 and arg.isalpha()):
                self.add("formats", name, "money takes a currency code like money:EUR")
            elif kind == "decimal" and arg and not (arg.isdigit() and int(arg) <= 10):
                self.add("formats", name, "decimal takes a number of places like decimal:2")
        for name, tones in self.r.badges.items():
            col = b.table.column(name)
            for value, tone in tones.items():
                if tone not in BADGE_TONES:
                    self.add("badges", name, f"{tone!r} is not one of {', '.join(BADGE_TONES)}")
                elif col is not None and col.choices and value not in col.choices:
                    self.add("badges", name, f"{value!r} is not one of {', '.join(col.choices)}")

    def natural_key(self, b: BoundResource) -> None:
        names = self.r.natural_key
        if not names:
            return
        if any(self.column(b, "natural_key", n) is None for n in names):
            return
        if unique_over(b.table, names) is None:
            self.add(
                "natural_key",
                ", ".join(names),
                "no unique constraint or index covers exactly these columns "
                f"(CREATE UNIQUE INDEX ON {b.table.name} ({', '.join(names)}))",
            )

    def inlines(self, b: BoundResource) -> None:
        for inline in self.r.inlines:
            child = self.catalog.get(inline.table)
            if child is None:
                self.add("inlines", inline.table, "no such table")
                continue
            col = child.column(inline.fk_column)
            if col is None or col.fk is None or col.fk.target != b.table.qualified:
                self.add("inlines", inline.fk_column, f"is not a foreign key to {b.table.name}")
            for name in (*inline.list_display, *inline.fields):
                if child.column(name) is None:
                    self.add("inlines", name, f"no such column in table {child.name}")
            if inline.editable and (len(child.primary_key) != 1 or inline.table not in self.tables):
                self.add(
                    "inlines",
                    inline.table,
                    "an editable inline needs a declared resource with a one-column primary key",
                )

    def relations(self, b: BoundResource) -> None:
        """Many-to-many declarations and bulk edit fields (app/admin/m2m.py, bulk_edit.py)."""
        if self.r.many_to_many:
            if len(b.key) != 1:
                self.add("many_to_many", self.r.table, "needs a single-column primary key")
            for name, message in resolve(
                self.r.many_to_many, b.table, self.catalog, display_column_of
            )[1]:
                self.add("many_to_many", name, message)
        if self.r.bulk_edit is not None:
            if len(b.key) != 1:
                self.add("bulk_edit", self.r.table, "needs a single-column primary key")
            for name in self.r.bulk_edit.fields:
                col = self.column(b, "bulk_edit", name)
                if col is not None and (not col.writable or name in b.key):
                    self.add("bulk_edit", name, "is a key, generated or an identity column")

    def actions(self, b: BoundResource) -> None:
        for action in self.r.actions:
            if not action.name.isidentifier() or action.name in CRUD_ACTIONS:
                self.add(
                    "actions",
                    action.name,
                    "needs a name of letters, digits and _ that is not view/add/change/delete",
                )
            for name, value in (action.set_values or {}).items():
                col = self.column(b, "actions", name)
                if col is None:
                    continue
                if not col.writable:
                    self.add("actions", name, "is generated or an identity column")
                elif col.choices and value not in col.choices:
                    self.add("actions", name, f"{value!r} is not one of {', '.join(col.choices)}")


def validate(registry: Registry, catalog: Mapping[str, Table]) -> list[Problem]:
    """Every name in every declaration checked against the catalog (RES-2)."""
    problems: list[Problem] = []
    for resource in registry:
        problems.extend(_Checker(resource, catalog, registry.tables()).run())
    return problems


def bind(registry: Registry, catalog: Mapping[str, Table]) -> dict[str, BoundResource]:
    """Slug → BoundResource for every declaration whose table exists (after `validate`)."""
    out: dict[str, BoundResource] = {}
    for resource in registry:
        table = catalog.get(resource.table)
        if table is not None:
            out[resource.key] = _Checker(resource, catalog).bound(table)
    return out


def unique_over(table: Table, names: tuple[str, ...]) -> str | None:
    """The unique constraint or (whole-table) unique index over exactly `names`, if any."""
    wanted = set(names)
    if set(table.primary_key) == wanted:
        return "primary key"
    for u in table.uniques:
        if set(u.columns) == wanted:
            return u.name
    for ix in table.indexes:
        if ix.unique and not ix.partial and set(ix.columns) == wanted:
            return ix.name
    return None


def inherent_read_only(table: Table) -> str | None:
    """Why a relation's rows cannot be edited in the admin whatever is declared, or None."""
    if table.kind in ("view", "materialized view"):
        return f"This is a {table.kind}: its rows are shown read-only."
    if not table.primary_key:
        return (
            "This table has no primary key, so a row cannot be named safely: "
            "its rows are shown read-only. Add a primary key to edit them here."
        )
    return None
