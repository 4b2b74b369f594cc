"""Many-to-many relations: their declaration (`ManyToMany`) and how join tables are found in
the catalog (a table whose primary key is exactly two columns, each a foreign key of its own).

Pure functions over the catalog; reading and writing the sets is `app/admin/m2m.py`. This
module must not import `app.admin.resources` (which imports it to bind declarations)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.db.catalog import ForeignKey, Table

DEFAULT_LIMIT = 500  # choices drawn without JavaScript; type-ahead finds the rest


@dataclass(frozen=True)
class ManyToMany:
    """A declared join table. `column` is its foreign key to this resource's table and
    `target_column` the one to the other side; both are found when there is only one way."""

    through: str
    column: str | None = None
    target_column: str | None = None
    label: str | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class Link:
    """One many-to-many relation as the edit page and the save use it."""

    name: str  # the join table's name: the form field and the audit change are named after it
    through: Table
    column: str  # join column → this resource's key
    target_column: str  # join column → the other table's key
    target: Table
    target_key: str  # the other table's column the join points to
    display: str  # the other table's column that names its rows
    label: str
    limit: int = DEFAULT_LIMIT

    @property
    def field(self) -> str:
        return f"_m2m.{self.name}"

    @property
    def was_field(self) -> str:
        return f"_m2m_was.{self.name}"


def _single_fk(table: Table, column: str) -> ForeignKey | None:
    for fk in table.foreign_keys:
        if fk.columns == (column,):
            return fk
    return None


def is_join_table(table: Table) -> bool:
    """Two key columns, each a single-column foreign key, and nothing else a new pair must fill."""
    if table.kind != "table" or len(table.primary_key) != 2:
        return False
    if any(_single_fk(table, c) is None for c in table.primary_key):
        return False
    return all(
        c.name in table.primary_key or c.nullable or c.has_default or c.is_generated
        for c in table.columns
    )


def candidates(tables: Iterable[Table]) -> list[str]:
    """`schema.name` of the tables whose foreign keys point at `tables`: possible join tables."""
    return sorted({f"{fk.schema}.{fk.table}" for t in tables for fk in t.referenced_by})


def _link(
    through: Table,
    *,
    own: ForeignKey,
    other: ForeignKey,
    catalog: Mapping[str, Table],
    display_of: Callable[[Table], str],
    declared: ManyToMany | None,
) -> Link | None:
    target = catalog.get(other.target)
    if target is None:
        return None
    label = declared.label if declared and declared.label else through.name.replace("_", " ")
    if not (declared and declared.label):
        # `technician_skills` seen from technicians reads "Skills": the other table's name.
        label = target.name.replace("_", " ")
    return Link(
        name=through.name,
        through=through,
        column=own.column,
        target_column=other.column,
        target=target,
        target_key=other.target_column,
        display=display_of(target),
        label=label[:1].upper() + label[1:],
        limit=declared.limit if declared else DEFAULT_LIMIT,
    )


def resolve(
    declared: Sequence[ManyToMany] | None,
    table: Table,
    catalog: Mapping[str, Table],
    display_of: Callable[[Table], str],
) -> tuple[tuple[Link, ...], list[tuple[str, str]]]:
    """The links of `table` and the problems of its declarations as (name, message).

    `declared` None: every join table in the catalog that points at `table`; a tuple: exactly
    those (an empty tuple turns detection off)."""
    links: list[Link] = []
    problems: list[tuple[str, str]] = []
    if declared is None:
        for name in candidates([table]):
            through = catalog.get(name)
            if through is None or not is_join_table(through):
                continue
            for own_col in through.primary_key:
                own = _single_fk(through, own_col)
                if own is None or own.target != table.qualified:
                    continue
                (other_col,) = [c for c in through.primary_key if c != own_col]
                other = _single_fk(through, other_col)
                assert other is not None
                found = _link(
                    through,
                    own=own,
                    other=other,
                    catalog=catalog,
                    display_of=display_of,
                    declared=None,
                )
                if found is not None:
                    links.append(found)
        return tuple(links), problems
    for d in declared:
        through = catalog.get(d.through)
        if through is None:
            problems.append((d.through, "no such table"))
            continue
        fks = [fk for fk in through.foreign_keys if len(fk.columns) == 1]
        own_fks = [
            fk
            for fk in fks
            if fk.target == table.qualified and (d.column is None or fk.column == d.column)
        ]
        if len(own_fks) != 1:
            problems.append(
                (d.through, f"needs column= naming its one foreign key to {table.name}")
            )
            continue
        own = own_fks[0]
        others = [
            fk
            for fk in fks
            if fk is not own and (d.target_column is None or fk.column == d.target_column)
        ]
        if len(others) != 1:
            problems.append(
                (d.through, "needs target_column= naming its foreign key to the other table")
            )
            continue
        if not is_join_table(through) and set(through.primary_key) != {
            own.column,
            others[0].column,
        }:
            problems.append((d.through, "its primary key must be its two foreign-key columns"))
            continue
        found = _link(
            through, own=own, other=others[0], catalog=catalog, display_of=display_of, declared=d
        )
        if found is None:
            problems.append((d.through, f"the table {others[0].target} is not loaded"))
            continue
        links.append(found)
    return tuple(links), problems
