"""Users on the engine (AUTHZ-7): list, create (a chosen password or a one-time one), the profile
with its panels, edit (profile, role, active, groups, direct permissions), delete, and the
account actions of REC-5. Every write is one call of an `app/authority` service."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from app import audit
from app.admin.builtin.groups import permission_grid
from app.admin.hooks import (
    Call,
    Cell,
    Done,
    Entity,
    Field,
    Listing,
    ListPage,
    ObjectAction,
    Panel,
    Service,
)
from app.authority import (
    accounts,
    groups,
    guards,
    mfa,
    passwords,
    permissions,
    recovery,
    sessions,
    users,
)
from app.authority.principal import ROLES
from app.authority.roles import MANAGER_ROLE
from app.authority.setup import HASHER, POLICY
from app.errors import Invalid
from app.web import forms, mfa_keys

PAGE_SIZE = 50
ACTIVE = {"yes": True, "no": False}
# REC-5 lock lengths; "minutes" takes a number from the form, "indefinite" locks until unlocked.
LOCKS: dict[str, tuple[str, timedelta | None]] = {
    "15m": ("15 minutes", timedelta(minutes=15)),
    "1h": ("1 hour", timedelta(hours=1)),
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "indefinite": ("Until unlocked", None),
    "minutes": ("A number of minutes", None),
}
MAX_LOCK_MINUTES = 525_600  # a year; longer is "indefinite"
# The last sign-in filter's presets: two of them are the engine's day ranges, the others are
# read here ("never", "over 90 days ago" have no from/to days).
SIGN_IN_PRESETS = {
    "never": "Never",
    "past_7_days": "Past 7 days",
    "past_30_days": "Past 30 days",
    "over_90_days": "Over 90 days ago",
}
PROFILE = ("full_name", "display_name", "job_title", "locale", "timezone")


def _when(at: datetime | None, never: str = "never") -> Cell:
    return Cell(at.strftime("%Y-%m-%d %H:%M UTC"), muted=False) if at else Cell(never, muted=True)


def _status(u: users.User) -> Cell:
    if not u.is_active:
        return Cell("Inactive", "danger")
    if u.is_locked():
        until = "until unlocked" if u.locked_until and u.locked_until.year >= 9999 else (
            f"until {u.locked_until:%Y-%m-%d %H:%M UTC}"
        )  # fmt: skip
        return Cell(f"Locked {until}", "warning")
    return Cell("Active", "success")


def _password(u: users.User) -> str:
    if not u.has_password:
        return "not set"
    if u.must_change_password:
        return "must be changed at next sign-in"
    return f"set {u.password_changed_at:%Y-%m-%d}" if u.password_changed_at else "set"


def _role(u: users.User) -> Cell:
    tone = "brand" if u.role in ("administrator", "developer") else "info"
    return Cell(u.role.capitalize(), "neutral" if u.role == "user" else tone)


def may_act(call: Call) -> bool:
    """Actions are for someone of strictly higher rank, never on oneself (AUTHZ-3 guard 2)."""
    return call.actor.user_id != call.obj.id and call.actor.rank > ROLES[call.obj.role]


async def _choices(call: Call) -> dict[str, Any]:
    held = await permissions.direct_permissions(call.conn, call.obj.id) if call.obj else []
    live = await _live(call) if call.obj else []
    return {
        "ladder": list(ROLES),
        # Roles at or below the actor's own: nobody hands out more than they hold (AUTHZ-3).
        "roles": [role for role, rank in ROLES.items() if rank <= call.actor.rank],
        "active": [("yes", "Active"), ("no", "Inactive")],
        "statuses": [("active", "Active"), ("locked", "Locked"), ("inactive", "Inactive")],
        "sign_in_presets": list(SIGN_IN_PRESETS.items()),
        "groups": [g.name for g in await groups.list_groups(call.conn)],
        "grid": permission_grid(held),
        "password_modes": [
            (
                "onetime",
                "Generate a one-time password, shown once; the user chooses a new one "
                "at first sign-in",
            ),
            ("set", "Set a password now"),
        ],
        "help.password": f"At least {call.config.password_min_length} characters; common "
        "passwords are refused.",
        "locks": [(k, label) for k, (label, _) in LOCKS.items()],
        "sessions": [("all", f"All sessions ({len(live)})")]
        + [
            (
                str(s.id),
                f"{(s.user_agent or 'unknown device')[:60]} · {s.ip or 'unknown'} · "
                f"last seen {s.last_seen_at:%Y-%m-%d %H:%M}",
            )
            for s in live
        ],
    }


async def _live(call: Call) -> list[sessions.Session]:
    return await sessions.list_for_user(call.conn, call.obj.id, idle=call.config.session_idle)


def _day_start(raw: str | None, *, next_day: bool = False) -> datetime | None:
    """A filter's day (already checked as YYYY-MM-DD) as midnight UTC; `next_day` for an
    inclusive upper bound."""
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise Invalid(
            f"{raw} is not a calendar date", fields={"last_sign_in": "not a calendar date"}
        ) from None
    if next_day:
        if day == date.max:
            return None  # up to the end of 9999-12-31 is no bound at all
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def _rows(call: Call, f: Any, position: list[Any] | None, _d: str) -> ListPage:
    after = (str(position[0]), int(position[1])) if position and len(position) == 2 else None
    now = datetime.now(UTC)
    preset = f.get("last_sign_in")
    since = _day_start(f.get("last_sign_in__gte"))
    until = _day_start(f.get("last_sign_in__lte"), next_day=True)
    if preset == "over_90_days":
        until = min(until, now - timedelta(days=90)) if until else now - timedelta(days=90)
    rows = await users.list_users(
        call.conn, role=f.get("role"), status=f.get("status"), group=f.get("group"),
        search=f.get("q"), never_signed_in=preset == "never",
        signed_in_since=since, signed_in_before=until, limit=PAGE_SIZE + 1, after=after,
    )  # fmt: skip
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return ListPage(rows, next=[rows[-1].email, rows[-1].id] if more else None)


# ---- writes: each one service call ---------------------------------------------------------


async def _create(call: Call, v: dict[str, Any]) -> tuple[Any, Done]:
    guards.check_role_ceiling(call.actor, v["role"])  # before Argon2: a refusal costs no hash
    one_time = passwords.generate() if v["password_mode"] == "onetime" else None
    if one_time is not None:
        password_hash = await call.app[HASHER].hash(one_time)
    elif v["password"] != v["password_confirm"]:
        raise Invalid(
            "the two passwords differ", fields={"password_confirm": "type the same password twice"}
        )
    else:
        password_hash = await passwords.hash_new(
            call.app[HASHER], call.app[POLICY], v["password"], email=v["email"]
        )
    user = await users.create(
        call.conn, call.audit, call.actor, email=v["email"], role=v["role"],
        password_hash=password_hash, must_change_password=one_time is not None,
        profile={"full_name": v["full_name"], "display_name": v["display_name"]},
        groups=v["groups"],
    )  # fmt: skip
    # LOGIN-7: a one-time password is shown once, on this response only.
    once = ("User created", one_time) if one_time is not None else None
    return user, Done("The user was created.", shown_once=once)


async def _update(call: Call, v: dict[str, Any]) -> Done:
    target = call.obj
    if v["role"] != target.role or v["is_active"] != target.is_active:
        # AUTHZ-3 guards 1–3 in their order before the wall (a refusal needs no password);
        # the service checks all four again inside the transaction that makes the change.
        new_role = v["role"] if v["role"] != target.role else None
        deactivate = target.is_active and not v["is_active"]
        guards.check_self(call.actor, target, new_role=new_role, deactivate=deactivate)
        guards.check_rank(call.actor, target)
        guards.check_role_ceiling(call.actor, new_role)
        await call.elevate()  # REAUTH-1: role changes and deactivation
    wanted = accounts.UserEdit(
        profile={name: v[name] for name in ("email", *PROFILE)},
        role=v["role"], is_active=v["is_active"], groups=v["groups"], permissions=v["perms"],
    )  # fmt: skip
    changed = await accounts.save_user(call.conn, call.audit, call.actor, target.id, wanted)
    return Done("Changes saved.") if changed else Done("Nothing was changed.", kind="info")


async def _delete(call: Call) -> Done:
    await users.delete(call.conn, call.audit, call.actor, call.obj.id)
    return Done("The user was deleted.", location="/admin/users/")


async def _guard(call: Call, op: str) -> None:
    """AUTHZ-3 guard 2 up front, so a page for someone out of reach is refused as such (403).
    One's own profile stays editable; nobody deletes themselves."""
    if op == "delete":
        guards.check_self(call.actor, call.obj, delete=True)
    if op != "edit" or call.actor.user_id != call.obj.id:
        guards.check_rank(call.actor, call.obj)


async def _initial(call: Call) -> dict[str, Any]:
    u = call.obj
    return {
        "email": u.email, "role": u.role, "is_active": u.is_active,
        "groups": await users.group_names(call.conn, u.id),
        "perms": await permissions.direct_permissions(call.conn, u.id),
        **{name: getattr(u, name) for name in PROFILE},
    }  # fmt: skip


# ---- account actions (REC-5): a reason each, behind the re-auth wall ------------------------


async def _reset_link(call: Call, v: dict[str, Any]) -> Done:
    await recovery.send_reset_link(
        call.conn, call.audit, call.actor, call.obj.id, reason=v["reason"],
        public_url=call.config.public_url, site_name=call.config.site_name,
    )  # fmt: skip
    return Done("A password reset link is on its way to the user's email.")


async def _temporary(call: Call, v: dict[str, Any]) -> Done:
    _user, one_time = await accounts.set_temporary_password(
        call.conn, call.audit, call.actor, call.obj.id, call.app[HASHER], reason=v["reason"]
    )
    return Done("", shown_once=("Temporary password set", one_time))


def lock_until(v: dict[str, Any], now: datetime) -> datetime | None:
    if v["duration"] == "minutes":
        raw = v["minutes"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LOCK_MINUTES:
            raise Invalid(
                f"the number of minutes must be a whole number from 1 to {MAX_LOCK_MINUTES}",
                fields={"minutes": f"1 to {MAX_LOCK_MINUTES}"},
            )
        return now + timedelta(minutes=int(raw))
    delta = LOCKS[v["duration"]][1]
    return None if delta is None else now + delta


async def _lock(call: Call, v: dict[str, Any]) -> Done:
    until = lock_until(v, datetime.now(UTC))
    await users.lock(
        call.conn, call.audit, call.actor, call.obj.id, until=until, reason=v["reason"]
    )
    return Done("The account is locked and its sessions have ended.")


async def _unlock(call: Call, v: dict[str, Any]) -> Done:
    await users.unlock(call.conn, call.audit, call.actor, call.obj.id, reason=v["reason"])
    return Done("The account is unlocked.")


async def _mfa_off(call: Call, v: dict[str, Any]) -> Done:
    await mfa.disable_for_user(call.conn, call.audit, call.actor, call.obj.id, reason=v["reason"])
    return Done("Two-step sign-in is off for this user; their sessions ended.")


async def _revoke(call: Call, v: dict[str, Any]) -> Done:
    """One session or all of them, through the single revocation writer."""
    session_id = None if v["session"] == "all" else forms.form_id(v, "session", "The session")
    await accounts.end_sessions(
        call.conn, call.audit, call.actor, call.obj.id, reason=v["reason"], session_id=session_id
    )
    return Done("The sessions have ended.")


def _acts(when: Any = None) -> Any:
    return lambda call: may_act(call) and (when is None or when(call.obj))


def _mfa_on(call: Call) -> bool:
    """Two-step sign-in is not turned off (`mfa_policy = "off"` hides it everywhere)."""
    return mfa_keys.MFA_RING in call.app


def _mfa_acts(call: Call) -> bool:
    return _mfa_on(call) and may_act(call) and bool(call.obj.mfa_enabled)


ACTIONS = (
    ObjectAction(
        "reset-link", "Send a password reset link",
        "The user gets an email with a single-use link, valid for 30 minutes. Their current "
        "password keeps working until they use it.", _reset_link, "Send the link", shown=_acts(),
    ),
    ObjectAction(
        "temporary-password", "Set a temporary password",
        "A one-time password is generated and shown to you once. The user must choose a new "
        "password at the next sign-in, and every session of theirs ends now.", _temporary,
        "Set a temporary password", danger=True, shown=_acts(),
    ),
    ObjectAction(
        "mfa-off", "Turn off two-step sign-in",
        "For a user who lost their phone and backup codes: their authenticator app and backup "
        "codes stop working, every session of theirs ends, and the next sign-in needs only the "
        "password (they can set it up again from their account page).", _mfa_off,
        "Turn off two-step sign-in", danger=True, shown=_mfa_acts,
        icon="shield",
    ),
    ObjectAction(
        "lock", "Lock the account",
        "The user cannot sign in until the lock ends, and every session of theirs ends now.",
        _lock, "Lock the account", danger=True, shown=_acts(lambda u: not u.is_locked()),
        fields=(Field("duration", "How long?", "radios", options="locks", default="1h"),
                Field("minutes", "Minutes (for “a number of minutes”)", max_len=6)),
        icon="lock",
    ),
    ObjectAction(
        "unlock", "Unlock the account",
        "Sign-in works again and the count of failed attempts starts from zero.", _unlock,
        "Unlock", shown=_acts(lambda u: u.is_locked()), icon="lock",
    ),
    ObjectAction(
        "sessions/revoke", "End sessions",
        "The chosen sessions end at once: the next request from that browser is asked to sign "
        "in again.", _revoke, "End the sessions", danger=True,
        fields=(Field("session", "Which sessions?", "select", options="sessions", accept=(), default="all"),),
        shown=lambda call: False,  # the sessions panel links here, per session and for all
    ),
)  # fmt: skip


# ---- panels on the profile -------------------------------------------------------------------


async def _permissions(call: Call) -> dict[str, Any]:
    found = await permissions.effective_permissions(call.conn, call.obj.id)
    member_of = await users.group_names(call.conn, call.obj.id)
    return {"effective": sorted(found.items()), "target": call.obj, "member_of": member_of}


async def _sessions(call: Call) -> dict[str, Any]:
    return {"sessions": await _live(call), "may_act": may_act(call), "target": call.obj}


async def _activity(call: Call) -> dict[str, Any]:
    return {"activity": await audit.user_activity(call.conn, call.obj.id, 20)}


def _note(call: Call) -> str:
    if call.actor.user_id == call.obj.id:
        return "This is your own account. Change your password and sessions on your account page."
    return f"Only someone of higher rank than {call.obj.role} can change this account."


USERS = Entity(
    slug="users",
    title="Users",
    noun="user",
    min_role=MANAGER_ROLE,
    icon="user",
    listing=Listing(
        _rows,
        columns=(
            ("Email", lambda u: Cell(u.email, href=f"/admin/users/{u.id}/")),
            ("Name", lambda u: u.display_name or u.full_name),
            ("Role", _role),
            ("Active", _status),
            ("Last sign-in", lambda u: _when(u.last_login_at)),
        ),
        filters=(
            Field("q", "Search email or name", "search", max_len=100),
            Field("role", "Role", "select", options="ladder"),
            Field("status", "Status", "select", options="statuses"),
            Field("group", "Group", "select", options="groups"),
            Field("last_sign_in", "Last sign-in", "daterange", options="sign_in_presets"),
        ),
        saved_views=True,
        empty="No users match",
        links=(("Invitations", "/admin/invitations/"), ("Invite", "/admin/invitations/new")),
    ),
    service=Service(
        load=users.get,
        title_of=lambda u: u.email,
        initial=_initial,
        create=_create,
        update=_update,
        delete=_delete,
        guard=_guard,
        delete_reauth=True,
        delete_text=lambda u: (
            "The account, its sessions, group memberships and direct "
            "permissions are removed. Its audit history stays. Deactivating keeps the account and "
            "can be undone."
        ),
    ),
    fields=(
        Field("email", "Email", "email", max_len=320, required=True, section="Profile"),
        Field("full_name", "Full name", max_len=200, section="Profile"),
        Field("display_name", "Display name", max_len=100, section="Profile"),
        Field("job_title", "Job title", max_len=200, section="Profile", on="edit"),
        Field("locale", "Locale", max_len=35, section="Profile", on="edit"),
        Field("timezone", "Time zone", max_len=64, section="Profile", on="edit"),
        # The whole ladder is valid input: a role above the actor's own is the role-ceiling
        # guard's refusal (a 403 with its own message), not an unknown value (AUTHZ-3 guard 3).
        Field(
            "role",
            "Role",
            "select",
            options="roles",
            accept=tuple(ROLES),
            section="Access",
            default="user",
            help="You can give your own role or a lower one.",
        ),
        Field(
            "is_active",
            "Active (may sign in)",
            "checkbox",
            section="Access",
            on="edit",
            help="Changing the role or deactivating ends the user's sessions and asks for "
            "your password again.",
        ),
        Field("groups", "Groups", "checks", options="groups", section="Groups", default=()),
        Field(
            "perms",
            "Direct permissions",
            "grid",
            options="grid",
            section="Direct permissions",
            on="edit",
            help="Granted to this user alone, in addition to their groups'.",
        ),
        Field(
            "password_mode",
            "How does the user get a password?",
            "radios",
            options="password_modes",
            section="Password",
            on="create",
            default="onetime",
        ),
        Field(
            "password",
            "Password",
            "password",
            section="Password",
            on="create",
            help="Common passwords are refused.",
        ),
        Field("password_confirm", "Password again", "password", section="Password", on="create"),
    ),
    details=(
        ("Role", _role),
        ("Status", _status),
        ("Last sign-in", lambda u: _when(u.last_login_at)),
        ("Password", _password),
        ("Failed sign-ins", lambda u: u.failed_login_count),
        ("Second factor", lambda u: "enabled" if u.mfa_enabled else "not enrolled"),
        ("Locale, time zone", lambda u: f"{u.locale}, {u.timezone}"),
        ("Created", lambda u: _when(u.created_at)),
    ),
    hidden_details=lambda call: frozenset() if _mfa_on(call) else frozenset({"Second factor"}),
    subtitle=lambda u: u.display_name or u.full_name,
    choices=_choices,
    actions=ACTIONS,
    panels=(
        Panel("Effective permissions", "admin/users/_permissions.html", _permissions),
        Panel("Sessions", "admin/users/_sessions.html", _sessions),
        Panel("Recent activity", "audit/_activity.html", _activity),
    ),
    actions_note=_note,
)
