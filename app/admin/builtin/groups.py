"""Groups on the engine: a name, a description, the permission grid saved as a diff, and the
members, added by email or removed (AUTHZ-4, AUTHZ-7)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.admin.hooks import (
    Call,
    Done,
    Entity,
    Field,
    Listing,
    ListPage,
    ObjectAction,
    Panel,
    Service,
)
from app.admin.registry import site_registry
from app.authority import accounts, groups, permissions, users
from app.authority.roles import MANAGER_ROLE
from app.errors import Invalid, NotFound
from app.web import forms

CRUD = ("view", "add", "change", "delete")  # the grid's columns, in this order


@dataclass
class GridRow:
    resource: str
    cells: dict[str, str]  # action → permission
    extra: list[tuple[str, str]] = field(default_factory=list)  # (action label, permission)
    title: str = ""  # the resource's title, as its list page is called


@dataclass
class Grid:
    """Rows = resources, columns = view/add/change/delete; custom actions listed per row."""

    rows: list[GridRow]
    descriptions: dict[str, str]
    columns: tuple[str, ...] = CRUD

    @property
    def names(self) -> list[str]:
        return list(self.descriptions)


def permission_grid(held: Iterable[str]) -> Grid:
    """Every declared permission; one held but no longer declared still gets a box, so it can
    be seen and revoked."""
    descriptions = dict(permissions.all_permissions())
    for name in sorted(set(held) - set(descriptions)):
        descriptions[name] = "no longer declared by the site"
    # Titles and action labels as the pages show them, not slugs ("Bookings", "Cancel").
    declared = list(site_registry())
    titles = {r.key: r.title or r.key for r in declared}
    labels = {f"{r.key}.{a.name}": a.label for r in declared for a in r.actions}
    rows: dict[str, GridRow] = {}
    for name in sorted(descriptions):
        resource, _, action = name.partition(".")
        row = rows.setdefault(resource, GridRow(resource, {}, title=titles.get(resource, resource)))
        if action in CRUD:
            row.cells[action] = name
        else:
            row.extra.append((labels.get(name, action.replace("_", " ").capitalize()), name))
    return Grid(list(rows.values()), descriptions)


async def _choices(call: Call) -> dict[str, Any]:
    held = await groups.group_permissions(call.conn, call.obj.id) if call.obj else []
    return {"grid": permission_grid(held)}


async def _rows(call: Call, _f: Any, _pos: Any, _d: str) -> ListPage:
    return ListPage(await groups.list_groups(call.conn))  # a few dozen at most: one page


async def _initial(call: Call) -> dict[str, Any]:
    g = call.obj
    held = await groups.group_permissions(call.conn, g.id)
    return {"name": g.name, "description": g.description, "perms": held}


async def _create(call: Call, v: dict[str, Any]) -> tuple[Any, Done]:
    group = await groups.create(
        call.conn, call.audit, call.actor, v["name"], description=v["description"]
    )
    return group, Done("The group was created.")


async def _update(call: Call, v: dict[str, Any]) -> Done:
    """The grid is saved as a diff: only what changed is granted or revoked (INV-3)."""
    changed = await accounts.save_group(
        call.conn, call.audit, call.actor, call.obj.id, name=v["name"],
        description=v["description"], permissions=v["perms"],
    )  # fmt: skip
    return Done("The group was saved.") if changed else Done("Nothing was changed.", kind="info")


async def _delete(call: Call) -> Done:
    await groups.delete(call.conn, call.audit, call.actor, call.obj.id)
    return Done("The group was deleted.", location="/admin/groups/")


async def _members(call: Call, v: dict[str, Any]) -> Done:
    """Add a member by email or remove one; the services apply the rank guard to the member."""
    if v["op"] == "add":
        address = forms.email(v)
        try:
            user_id = (await users.get_by_email(call.conn, address)).id
        except NotFound:
            raise Invalid(
                f"no user has the email {address}", fields={"email": "no such user"},
                fix="check the spelling, or create the user first",
            ) from None  # fmt: skip
        await groups.add_member(call.conn, call.audit, call.actor, call.obj.id, user_id)
        return Done("The member was added.", location=f"/admin/groups/{call.obj.id}/#members")
    user_id = forms.form_id(v, "user_id", "The member")
    await groups.remove_member(call.conn, call.audit, call.actor, call.obj.id, user_id)
    return Done("The member was removed.", location=f"/admin/groups/{call.obj.id}/#members")


async def _member_panel(call: Call) -> dict[str, Any]:
    return {"members": await groups.members(call.conn, call.obj.id)}


async def _granted_panel(call: Call) -> dict[str, Any]:
    return {"granted": await groups.group_permissions(call.conn, call.obj.id)}


def _counts(g: Any) -> str:
    return f"{g.members} members · {g.permissions} permissions"


GROUPS = Entity(
    slug="groups",
    title="Groups",
    noun="group",
    min_role=MANAGER_ROLE,
    icon="users",
    listing=Listing(
        _rows,
        columns=(
            ("Name", lambda g: g.name),
            ("Description", lambda g: g.description),
            ("Members", lambda g: g.members),
            ("Permissions", lambda g: g.permissions),
        ),
        empty="No groups yet",
    ),
    service=Service(
        load=groups.get,
        title_of=lambda g: g.name,
        initial=_initial,
        create=_create,
        update=_update,
        delete=_delete,
        delete_text=lambda g: (
            f"Its {g.members} members keep their accounts but lose the "
            f"{g.permissions} permissions it grants, from their next request on."
        ),
    ),
    fields=(
        Field(
            "name",
            "Name",
            max_len=80,
            required=True,
            help="Letters, digits, spaces, dots, dashes or underscores, e.g. support-team.",
        ),
        Field("description", "Description", max_len=500),
        Field("perms", "Permissions", "grid", options="grid", on="edit", section="Permissions"),
    ),
    details=(("Description", lambda g: g.description or "—"),),
    subtitle=_counts,
    choices=_choices,
    actions=(
        ObjectAction(
            "members",
            "Members",
            "Add a member by email, or remove one by their id.",
            _members,
            submit="Change the members",
            reason=False,
            reauth=False,
            fields=(
                Field("op", "Add or remove", "select", accept=("add", "remove")),
                Field("email", "Email", max_len=320),
                Field("user_id", "User id", max_len=20),
            ),
            shown=lambda call: False,  # the members panel holds its forms
        ),
    ),
    panels=(
        Panel("Members", "admin/groups/_members.html", _member_panel),
        Panel("Permissions", "admin/groups/_granted.html", _granted_panel),
    ),
)
