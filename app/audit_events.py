"""The closed registry of audit event types and one typed constructor per type (AUDIT-2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

# Target resource slugs of the built-in administration (/admin/users, /admin/groups).
USERS = "users"
GROUPS = "groups"

Outcome = Literal["success", "failure", "denied"]
Details = Mapping[str, Any] | None


class EventType(StrEnum):
    """Stable ids: new ones may be added (with the SQL CHECK and the docs), none renamed."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    BULK_ACTION = "bulk_action"
    USER_CREATED = "user_created"
    USER_UPDATED = "user_updated"
    USER_DELETED = "user_deleted"
    ROLE_CHANGED = "role_changed"
    GROUP_CREATED = "group_created"
    GROUP_UPDATED = "group_updated"
    GROUP_DELETED = "group_deleted"
    PERMISSION_GRANTED = "permission_granted"
    PERMISSION_REVOKED = "permission_revoked"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_UNLOCKED = "account_unlocked"
    SESSION_LOGOUT = "session_logout"
    SESSIONS_REVOKED_SELF = "sessions_revoked_self"
    SESSIONS_REVOKED_BY_OTHER = "sessions_revoked_by_other"
    PASSWORD_CHANGED_SELF = "password_changed_self"
    PASSWORD_RESET_SELF_REQUEST = "password_reset_self_request"
    PASSWORD_RESET_SELF_CONSUME = "password_reset_self_consume"
    PASSWORD_RESET_BY_OTHER = "password_reset_by_other"
    FORCED_PASSWORD_CHANGE_COMPLETED = "forced_password_change_completed"
    REAUTH_SUCCEEDED = "reauth_succeeded"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    MFA_RESET_BY_OTHER = "mfa_reset_by_other"
    MFA_CODE_CONSUMED = "mfa_code_consumed"
    BACKUP_CODES_REGENERATED = "backup_codes_regenerated"
    MFA_POLICY_ENFORCED = "mfa_policy_enforced"
    EMERGENCY_RECOVERY = "emergency_recovery"
    EXPORT_DOWNLOADED = "export_downloaded"
    IMPORT_APPLIED = "import_applied"
    SETTINGS_CHANGED = "settings_changed"
    AI_PROPOSAL_APPROVED = "ai_proposal_approved"
    AI_PROPOSAL_REJECTED = "ai_proposal_rejected"
    AI_PROPOSAL_APPLIED = "ai_proposal_applied"
    MEMORY_REDACTED = "memory_redacted"
    API_TOKEN_CREATED = "api_token_created"
    API_TOKEN_REVOKED = "api_token_revoked"
    INVITATION_SENT = "invitation_sent"
    INVITATION_RESENT = "invitation_resent"
    INVITATION_REVOKED = "invitation_revoked"
    INVITATION_ACCEPTED = "invitation_accepted"


# Types the log accepts (the table's CHECK lists them) but no feature writes yet: the audit
# page does not offer them as filters, so nobody searches for events that cannot exist.
NOT_EMITTED = frozenset(
    {
        EventType.SETTINGS_CHANGED,
    }
)
FILTERABLE = tuple(t for t in EventType if t not in NOT_EMITTED)


@dataclass(frozen=True)
class Event:
    """What happened; `record` adds who, when, from where and the chain hashes."""

    type: EventType
    summary: str
    target_resource: str | None = None
    target_id: str | None = None
    outcome: Outcome = "success"
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _event(
    type_: EventType,
    summary: str,
    resource: str | None = None,
    object_id: object = None,
    *,
    outcome: Outcome = "success",
    details: Details = None,
    **metadata: Any,
) -> Event:
    meta = {k: v for k, v in metadata.items() if v is not None}
    meta.update(details or {})
    return Event(
        type_,
        summary,
        resource,
        None if object_id is None else str(object_id),
        outcome,
        meta,
    )


def _user(type_: EventType, summary: str, user_id: int | None, email: str, **kw: Any) -> Event:
    return _event(type_, summary, USERS, user_id, email=email, **kw)


# ---- resources (EDIT-6, EDIT-8, LIST-9, EDIT-10) ------------------------------------------


def create(
    resource: str,
    object_id: object,
    label: str,
    values: Mapping[str, Any],
    *,
    details: Details = None,
) -> Event:
    return _event(
        EventType.CREATE, f"Created {resource} {label}", resource, object_id,
        values=dict(values), details=details,
    )  # fmt: skip


def update(
    resource: str,
    object_id: object,
    label: str,
    changes: Mapping[str, Mapping[str, Any]],
    *,
    details: Details = None,
) -> Event:
    """`changes` is `audit.diff(before, after)`: {field: {"from": …, "to": …}}, secrets masked."""
    fields = ", ".join(sorted(changes)) or "nothing"
    return _event(
        EventType.UPDATE, f"Changed {resource} {label}: {fields}", resource, object_id,
        changes=dict(changes), details=details,
    )  # fmt: skip


def delete(
    resource: str,
    object_id: object,
    label: str,
    values: Mapping[str, Any] | None = None,
    *,
    details: Details = None,
) -> Event:
    return _event(
        EventType.DELETE, f"Deleted {resource} {label}", resource, object_id,
        values=dict(values) if values is not None else None, details=details,
    )  # fmt: skip


def bulk_action(
    resource: str, action: str, ids: Iterable[object], *, details: Details = None
) -> Event:
    id_list = [str(i) for i in ids]
    return _event(
        EventType.BULK_ACTION, f"{action} on {len(id_list)} {resource}", resource, None,
        action=action, ids=id_list, count=len(id_list), details=details,
    )  # fmt: skip


def export_downloaded(
    resource: str,
    fmt: Literal["csv", "jsonl"],
    rows: int,
    filters: Mapping[str, Any] | None = None,
    *,
    complete: bool = True,
) -> Event:
    summary = f"Exported {rows} {resource} rows as {fmt}" + ("" if complete else " (interrupted)")
    return _event(
        EventType.EXPORT_DOWNLOADED, summary, resource, None,
        format=fmt, rows=rows, filters=dict(filters or {}), complete=complete,
    )  # fmt: skip


def import_applied(
    resource: str,
    filename: str,
    *,
    inserted: int,
    updated: int,
    skipped: int,
    details: Details = None,
) -> Event:
    rows = inserted + updated
    summary = (
        f"Imported {rows} {resource} rows from {filename} "
        f"({inserted} added, {updated} updated, {skipped} skipped)"
    )
    return _event(
        EventType.IMPORT_APPLIED, summary, resource, None,
        rows=rows, inserted=inserted, updated=updated, skipped=skipped, filename=filename,
        details=details,
    )  # fmt: skip


def settings_changed(changes: Mapping[str, Mapping[str, Any]], *, details: Details = None) -> Event:
    names = ", ".join(sorted(changes)) or "nothing"
    return _event(
        EventType.SETTINGS_CHANGED, f"Changed settings: {names}", "settings", None,
        changes=dict(changes), details=details,
    )  # fmt: skip


# ---- users, roles, groups, permissions (AUTHZ) -----------------------------------------


def user_created(
    user_id: int, email: str, role: str, *, via: str = "admin", details: Details = None
) -> Event:
    return _user(
        EventType.USER_CREATED, f"Created user {email} ({role})", user_id, email,
        role=role, via=via, details=details,
    )  # fmt: skip


def user_updated(
    user_id: int, email: str, changes: Mapping[str, Mapping[str, Any]], *, details: Details = None
) -> Event:
    fields = ", ".join(sorted(changes)) or "nothing"
    return _user(
        EventType.USER_UPDATED, f"Changed user {email}: {fields}", user_id, email,
        changes=dict(changes), details=details,
    )  # fmt: skip


def user_deleted(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(EventType.USER_DELETED, f"Deleted user {email}", user_id, email, details=details)


def role_changed(
    user_id: int, email: str, from_role: str, to_role: str, *, details: Details = None
) -> Event:
    return _user(
        EventType.ROLE_CHANGED, f"Role of {email} changed from {from_role} to {to_role}",
        user_id, email, changes={"role": {"from": from_role, "to": to_role}}, details=details,
    )  # fmt: skip


def group_created(group_id: int, name: str, *, details: Details = None) -> Event:
    return _event(
        EventType.GROUP_CREATED, f"Created group {name}", GROUPS, group_id, name=name,
        details=details,
    )  # fmt: skip


def group_updated(
    group_id: int, name: str, changes: Mapping[str, Mapping[str, Any]], *, details: Details = None
) -> Event:
    fields = ", ".join(sorted(changes)) or "nothing"
    return _event(
        EventType.GROUP_UPDATED, f"Changed group {name}: {fields}", GROUPS, group_id,
        name=name, changes=dict(changes), details=details,
    )  # fmt: skip


def group_deleted(group_id: int, name: str, *, details: Details = None) -> Event:
    return _event(
        EventType.GROUP_DELETED, f"Deleted group {name}", GROUPS, group_id, name=name,
        details=details,
    )  # fmt: skip


def _perm(
    type_: EventType,
    verb: str,
    *,
    holder: Literal["user", "group"],
    holder_id: int,
    holder_label: str,
    permissions: Iterable[str],
    details: Details,
) -> Event:
    perms = sorted(permissions)
    prep = "to" if type_ is EventType.PERMISSION_GRANTED else "from"
    return _event(
        type_, f"{verb} {', '.join(perms)} {prep} {holder} {holder_label}",
        USERS if holder == "user" else GROUPS, holder_id,
        permissions=perms, holder=holder_label, details=details,
    )  # fmt: skip


def permission_granted(
    holder: Literal["user", "group"],
    holder_id: int,
    holder_label: str,
    permissions: Iterable[str],
    *,
    details: Details = None,
) -> Event:
    return _perm(
        EventType.PERMISSION_GRANTED, "Granted", holder=holder, holder_id=holder_id,
        holder_label=holder_label, permissions=permissions, details=details,
    )  # fmt: skip


def permission_revoked(
    holder: Literal["user", "group"],
    holder_id: int,
    holder_label: str,
    permissions: Iterable[str],
    *,
    details: Details = None,
) -> Event:
    return _perm(
        EventType.PERMISSION_REVOKED, "Revoked", holder=holder, holder_id=holder_id,
        holder_label=holder_label, permissions=permissions, details=details,
    )  # fmt: skip


# ---- sign-in, throttling, sessions (LOGIN, SESS) ----------------------------------------


def login_succeeded(
    user_id: int, email: str, *, mfa: bool = False, details: Details = None
) -> Event:
    return _user(
        EventType.LOGIN_SUCCEEDED, f"{email} signed in", user_id, email, mfa=mfa,
        details=details,
    )  # fmt: skip


def login_failed(
    email: str,
    reason: Literal["wrong_password", "wrong_code", "inactive", "locked"],
    *,
    user_id: int | None = None,
    details: Details = None,
) -> Event:
    """Only for known accounts: unknown emails produce no audit row (LOGIN-4)."""
    return _user(
        EventType.LOGIN_FAILED, f"Failed sign-in for {email}: {reason.replace('_', ' ')}",
        user_id, email, outcome="failure", reason=reason, details=details,
    )  # fmt: skip


def account_locked(
    user_id: int,
    email: str,
    *,
    via: Literal["auto_throttle", "admin", "cli"],
    until: datetime | None,
    reason: str | None = None,
    details: Details = None,
) -> Event:
    how = "after repeated failures" if via == "auto_throttle" else f"by {via}"
    return _user(
        EventType.ACCOUNT_LOCKED, f"Locked {email} {how}", user_id, email, via=via,
        until=until.isoformat() if until else "indefinite", reason=reason, details=details,
    )  # fmt: skip


def account_unlocked(
    user_id: int,
    email: str,
    *,
    via: Literal["admin", "cli"],
    reason: str | None = None,
    details: Details = None,
) -> Event:
    return _user(
        EventType.ACCOUNT_UNLOCKED, f"Unlocked {email} by {via}", user_id, email, via=via,
        reason=reason, details=details,
    )  # fmt: skip


def session_logout(user_id: int, email: str, session_id: int, *, details: Details = None) -> Event:
    return _user(
        EventType.SESSION_LOGOUT, f"{email} signed out", user_id, email, session_id=session_id,
        details=details,
    )  # fmt: skip


def sessions_revoked_self(
    user_id: int, email: str, session_ids: Iterable[int], reason: str, *, details: Details = None
) -> Event:
    ids = sorted(session_ids)
    return _user(
        EventType.SESSIONS_REVOKED_SELF, f"{email} ended {len(ids)} of their sessions",
        user_id, email, session_ids=ids, revoked_reason=reason, details=details,
    )  # fmt: skip


def sessions_revoked_by_other(
    user_id: int,
    email: str,
    session_ids: Iterable[int],
    reason: str,
    *,
    note: str | None = None,
    details: Details = None,
) -> Event:
    """`reason` is the SESS-4 revocation reason; `note` the administrator's words (REC-5)."""
    ids = sorted(session_ids)
    return _user(
        EventType.SESSIONS_REVOKED_BY_OTHER, f"Ended {len(ids)} sessions of {email}",
        user_id, email, session_ids=ids, revoked_reason=reason, note=note, details=details,
    )  # fmt: skip


# ---- passwords and recovery (REC, LOGIN-7) ----------------------------------------------


def password_changed_self(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.PASSWORD_CHANGED_SELF, f"{email} changed their password", user_id, email,
        details=details,
    )  # fmt: skip


def password_reset_self_request(
    user_id: int, email: str, token_fingerprint: str, *, details: Details = None
) -> Event:
    """`token_fingerprint` is `audit.fingerprint(token)`, never the token (AUDIT-7)."""
    return _user(
        EventType.PASSWORD_RESET_SELF_REQUEST, f"{email} asked for a password reset link",
        user_id, email, token_fingerprint=token_fingerprint, details=details,
    )  # fmt: skip


def password_reset_self_consume(
    user_id: int,
    email: str,
    token_fingerprint: str,
    *,
    sessions_revoked: int = 0,
    details: Details = None,
) -> Event:
    return _user(
        EventType.PASSWORD_RESET_SELF_CONSUME, f"{email} reset their password with a link",
        user_id, email, token_fingerprint=token_fingerprint,
        sessions_revoked_count=sessions_revoked, details=details,
    )  # fmt: skip


def password_reset_by_other(
    user_id: int,
    email: str,
    method: Literal["link", "temporary_password"],
    reason: str,
    *,
    details: Details = None,
) -> Event:
    what = "sent a reset link to" if method == "link" else "set a temporary password for"
    return _user(
        EventType.PASSWORD_RESET_BY_OTHER, f"An administrator {what} {email}", user_id, email,
        method=method, reason=reason, details=details,
    )  # fmt: skip


def forced_password_change_completed(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.FORCED_PASSWORD_CHANGE_COMPLETED, f"{email} chose a new password as required",
        user_id, email, details=details,
    )  # fmt: skip


def reauth_succeeded(
    user_id: int,
    email: str,
    *,
    method: Literal["password", "password+mfa"] = "password",
    details: Details = None,
) -> Event:
    return _user(
        EventType.REAUTH_SUCCEEDED, f"{email} confirmed their identity", user_id, email,
        method=method, details=details,
    )  # fmt: skip


# ---- second factor (MFA) ----------------------------------------------------------------


def mfa_enabled(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.MFA_ENABLED, f"{email} turned on two-step sign-in", user_id, email,
        details=details,
    )  # fmt: skip


def mfa_disabled(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.MFA_DISABLED, f"{email} turned off two-step sign-in", user_id, email,
        details=details,
    )  # fmt: skip


def mfa_reset_by_other(user_id: int, email: str, reason: str, *, details: Details = None) -> Event:
    return _user(
        EventType.MFA_RESET_BY_OTHER, f"Two-step sign-in of {email} was reset", user_id, email,
        reason=reason, details=details,
    )  # fmt: skip


def mfa_code_consumed(
    user_id: int,
    email: str,
    kind: Literal["totp", "backup_code"],
    *,
    remaining_backup_codes: int | None = None,
    details: Details = None,
) -> Event:
    what = "an authenticator code" if kind == "totp" else "a backup code"
    return _user(
        EventType.MFA_CODE_CONSUMED, f"{email} used {what}", user_id, email, kind=kind,
        remaining_backup_codes_count=remaining_backup_codes, details=details,
    )  # fmt: skip


def backup_codes_regenerated(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.BACKUP_CODES_REGENERATED, f"{email} made new backup codes", user_id, email,
        details=details,
    )  # fmt: skip


def mfa_policy_enforced(
    user_id: int,
    email: str,
    *,
    action: Literal["sent_to_setup", "refused_setup_overdue"],
    grace_ends_at: datetime | None = None,
    details: Details = None,
) -> Event:
    """The policy requires a second factor this user has not set up, seen at sign-in: within
    the grace period they are sent to the set-up page; after it the password alone is refused."""
    what = (
        "was sent to set up two-step sign-in"
        if action == "sent_to_setup"
        else "was refused: the time to set up two-step sign-in has passed"
    )
    return _user(
        EventType.MFA_POLICY_ENFORCED, f"{email} {what}", user_id, email,
        outcome="success" if action == "sent_to_setup" else "denied", action=action,
        grace_ends_at=grace_ends_at.isoformat() if grace_ends_at else None, details=details,
    )  # fmt: skip


# ---- break-glass, AI governance, project memory (R4, AI-1, MEM-1) ----------------------


def emergency_recovery(
    operation: Literal[
        "reset-password", "unlock", "disable-mfa", "promote", "demote", "emergency-access"
    ],
    user_id: int,
    email: str,
    reason: str,
    *,
    details: Details = None,
) -> Event:
    """The OS actor and argv come from the Context (CLI-5, R4-1)."""
    return _user(
        EventType.EMERGENCY_RECOVERY, f"Break-glass {operation} for {email}", user_id, email,
        operation=operation, reason=reason, details=details,
    )  # fmt: skip


def ai_proposal_approved(proposal_id: str, capability: str, *, details: Details = None) -> Event:
    return _event(
        EventType.AI_PROPOSAL_APPROVED, f"Approved AI proposal {proposal_id} ({capability})",
        "ai_proposals", proposal_id, capability=capability, details=details,
    )  # fmt: skip


def ai_proposal_rejected(
    proposal_id: str, capability: str, reason: str, *, details: Details = None
) -> Event:
    return _event(
        EventType.AI_PROPOSAL_REJECTED, f"Rejected AI proposal {proposal_id} ({capability})",
        "ai_proposals", proposal_id, capability=capability, reason=reason, details=details,
    )  # fmt: skip


def ai_proposal_applied(
    proposal_id: str, files: Iterable[str], *, details: Details = None
) -> Event:
    paths = sorted(files)
    return _event(
        EventType.AI_PROPOSAL_APPLIED, f"Applied AI proposal {proposal_id} ({len(paths)} files)",
        "ai_proposals", proposal_id, files=paths, details=details,
    )  # fmt: skip


def memory_redacted(entry_id: str, reason: str, *, details: Details = None) -> Event:
    return _event(
        EventType.MEMORY_REDACTED, f"Redacted memory entry {entry_id}", "memory", entry_id,
        reason=reason, details=details,
    )  # fmt: skip


# Every type has exactly one constructor here; a test keeps this map complete.
# ---- API tokens -----------------------------------------------------------------------


def api_token_created(
    user_id: int,
    email: str,
    token_id: int,
    name: str,
    *,
    scope: Iterable[str],
    expires_at: str,
    details: Details = None,
) -> Event:
    return _user(
        EventType.API_TOKEN_CREATED, f"API token {name!r} made for {email}", user_id, email,
        token_id=token_id, name=name, scope=sorted(scope), expires=expires_at, details=details,
    )  # fmt: skip


def api_token_revoked(
    user_id: int, email: str, token_id: int, name: str, *, details: Details = None
) -> Event:
    return _user(
        EventType.API_TOKEN_REVOKED, f"API token {name!r} of {email} revoked", user_id, email,
        token_id=token_id, name=name, details=details,
    )  # fmt: skip


# ---- invitations (AUTHZ-9) ----------------------------------------------------------------


def invitation_sent(
    user_id: int, email: str, role: str, groups: Iterable[str], *, details: Details = None
) -> Event:
    names = sorted(groups)
    return _user(
        EventType.INVITATION_SENT, f"Invited {email} ({role})", user_id, email,
        role=role, groups=names, details=details,
    )  # fmt: skip


def invitation_resent(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.INVITATION_RESENT, f"Sent the invitation to {email} again; the old link no"
        " longer works", user_id, email, details=details,
    )  # fmt: skip


def invitation_revoked(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.INVITATION_REVOKED, f"Withdrew the invitation to {email}", user_id, email,
        details=details,
    )  # fmt: skip


def invitation_accepted(user_id: int, email: str, *, details: Details = None) -> Event:
    return _user(
        EventType.INVITATION_ACCEPTED, f"{email} accepted the invitation and chose a password",
        user_id, email, details=details,
    )  # fmt: skip


CONSTRUCTORS = {t: globals()[t.value] for t in EventType}
