"""The hooks of a resource whose rows a service owns: users, groups, the audit log.

A catalog `Resource` (app/admin/resources.py) lets the engine read and write a company table
itself. Keel's own accounts cannot work that way: saving a user takes locks, runs the authority
guards, queues mail and records audit events, and all of that lives in `app/authority/`. So such
a resource is an `Entity`: the engine draws its list, form, object page, delete confirmation and
per-object action pages, checks the role floor, reads and validates the form, renders refusals
and form errors, and carries the notice across the redirect; the entity supplies a few typed
hooks that call the services. There are six kinds of hook, and no others:

- `Service`: load one row, and create / update / delete through a service function;
- `ObjectAction`: a per-object action with its own page (revoke sessions, send a reset link);
- `Panel`: an extra section on the object page (sessions, history, members);
- `Field` with `on=`: fields excluded from the create or the edit form; `Cell`: computed fields;
- `Listing`: the rows of one list page from a service, with filters and a keyset position;
- `Entity.min_role`: the role floor every page of the entity checks first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from aiohttp import web

from app import audit
from app.authority.principal import Principal
from app.web import keys
from app.web.auth import audit_context, require_elevated

Conn = psycopg.AsyncConnection[Any]
Kind = Literal[
    "text", "email", "textarea", "password", "select", "radios", "checkbox", "checks", "grid",
    "search", "date", "daterange",
]  # fmt: skip


@dataclass(frozen=True)
class Call:
    """What every hook receives: the request, who acts, on which row (None on lists and create),
    and a connection. Services open their own transactions on it."""

    request: web.Request
    actor: Principal
    conn: Conn
    obj: Any = None

    @property
    def audit(self) -> audit.Context:
        return audit_context(self.request)

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def config(self) -> Any:
        return self.request.app[keys.CONFIG]

    async def elevate(self) -> None:
        """The re-authentication wall: call it after the guards, so a refusal costs no password."""
        await require_elevated(self.request)


@dataclass(frozen=True)
class Done:
    """What a write hook answers: a notice shown on the next page (the signed flash), where to
    go (default: the object's page), or a secret shown once on this response instead."""

    notice: str
    location: str | None = None
    shown_once: tuple[str, str] | None = None  # (page heading, the one-time password)
    kind: Literal["success", "info"] = "success"


@dataclass(frozen=True)
class Field:
    """A form field (or a list filter). `options` names an entry of `Service.choices`; the
    posted value must be one of them, or of `accept` when more is valid input than is offered
    (a role above the actor's is the role-ceiling guard's refusal, not an unknown value), or
    anything at all with `accept=()`, which leaves the check to the hook."""

    name: str
    label: str
    kind: Kind = "text"
    max_len: int = 200
    required: bool = False
    help: str | None = None
    options: str | None = None
    accept: tuple[str, ...] | None = None
    section: str = ""
    on: Literal["create", "edit", "both"] = "both"  # excluded from the other form
    default: Any = ""
    # A "daterange" list filter: `name` carries a preset (the pills, offered by `options` or
    # the engine's own), these two carry the from/to days; each list keeps its own parameter
    # names so old bookmarks (the audit log's since/until) still work.
    from_param: str | None = None
    to_param: str | None = None

    @property
    def from_name(self) -> str:
        return self.from_param or f"{self.name}__gte"

    @property
    def to_name(self) -> str:
        return self.to_param or f"{self.name}__lte"


@dataclass(frozen=True)
class Cell:
    """A computed value on a list row or the object page, optionally a badge or a link."""

    text: str
    tone: str | None = None  # a badge of this tone
    href: str | None = None
    muted: bool = False


Computed = tuple[str, Callable[[Any], "Cell | str"]]  # (label, row → value)


@dataclass(frozen=True)
class ListPage:
    rows: list[Any]
    next: list[Any] | None = None  # keyset position of the following page, signed by the engine
    prev: list[Any] | None = None


@dataclass(frozen=True)
class Listing:
    """One list page from a service: `load(call, filters, position, direction)`. Filters are
    parsed by the engine from `filters`; positions travel inside the engine's signed cursor."""

    load: Callable[[Call, Mapping[str, Any], list[Any] | None, str], Awaitable[ListPage]]
    columns: tuple[Computed, ...] = ()
    filters: tuple[Field, ...] = ()
    empty: str = "Nothing here yet"
    # (label, address) buttons beside "New …" for those who may create (e.g. invitations).
    links: tuple[tuple[str, str], ...] = ()
    # Private saved views above the table (the same storage and routes as resource lists).
    saved_views: bool = False
    all_label: str = ""  # the first view's name; default "All <title>"


@dataclass(frozen=True)
class Service:
    """Create, update and delete through service functions; the engine never writes SQL here.

    `initial(call)` gives the edit form's values; `guard(call, op)` refuses (PermissionDenied)
    before a page of `op` (edit, delete, or an action's name) is drawn or posted."""

    load: Callable[[Conn, int], Awaitable[Any]]
    title_of: Callable[[Any], str]
    initial: Callable[[Call], Awaitable[dict[str, Any]]] | None = None
    create: Callable[[Call, dict[str, Any]], Awaitable[tuple[Any, Done]]] | None = None
    update: Callable[[Call, dict[str, Any]], Awaitable[Done]] | None = None
    delete: Callable[[Call], Awaitable[Done]] | None = None
    guard: Callable[[Call, str], Awaitable[None]] | None = None
    delete_text: Callable[[Any], str] | None = None
    delete_reauth: bool = False


@dataclass(frozen=True)
class ObjectAction:
    """A per-object action at `/admin/<slug>/<id>/<name>`: a page with `text`, `fields` and (when
    `reason`) a reason kept in the audit log; the POST calls `run`. `shown(call)` says whether
    its button appears on the object page (cosmetic: the page and the POST check for
    themselves, through `Service.guard` and the services)."""

    name: str
    title: str
    text: str
    run: Callable[[Call, dict[str, Any]], Awaitable[Done]]
    submit: str = ""
    danger: bool = False
    fields: tuple[Field, ...] = ()
    reason: bool = True
    reauth: bool = True
    shown: Callable[[Call], bool] = lambda call: True
    icon: str | None = None


@dataclass(frozen=True)
class Panel:
    """An extra section on the object page: `template` rendered with what `load` returns."""

    title: str
    template: str
    load: Callable[[Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Entity:
    """A resource whose rows a service owns, declared with the hooks above."""

    slug: str
    title: str
    noun: str  # "user": headings say "New user", "Delete user"
    min_role: str
    listing: Listing
    service: Service | None = None
    fields: tuple[Field, ...] = ()
    details: tuple[Computed, ...] = ()
    # Details whose label this returns are left out for this request (a feature turned off).
    hidden_details: Callable[[Call], frozenset[str]] | None = None
    actions: tuple[ObjectAction, ...] = ()
    panels: tuple[Panel, ...] = ()
    icon: str = "list"
    choices: Callable[[Call], Awaitable[dict[str, Any]]] | None = None  # option lists by name
    subtitle: Callable[[Any], str] | None = None
    actions_note: Callable[[Call], str] | None = None  # said where no action is shown
    create_help: str | None = None
    extra_context: Mapping[str, Any] = field(default_factory=dict)

    def action(self, name: str) -> ObjectAction | None:
        return next((a for a in self.actions if a.name == name), None)

    def form_fields(self, op: Literal["create", "edit"]) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.on in (op, "both"))
