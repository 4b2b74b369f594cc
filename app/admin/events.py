"""Audit events as sentences: who did what to which record, by the record's current name.

The dashboard's recent activity and the audit log page draw the same events; both take their
wording and links from here, so an event reads the same wherever it is shown."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from aiohttp import web

from app import audit
from app.admin import lookup, rowkey
from app.admin.edit_views import singular
from app.admin.setup import ADMIN
from app.web import keys

_VERBS = {"create": "created", "update": "changed", "delete": "deleted"}
# Keel's own account and group events read like record changes.
_OWN_VERBS = {
    f"{thing}_{what}": verb
    for thing in ("user", "group")
    for what, verb in (("created", "created"), ("updated", "changed"), ("deleted", "deleted"))
}
_TONES = {"delete": "danger", "create": "success", "update": "brand", "login_failed": "warning"}
# Keel's own accounts and groups are not catalog resources: their names come from their tables.
_OWN = {"users": "user", "groups": "group"}
_OWN_NAMES = {
    "users": "SELECT id::text, coalesce(nullif(display_name, ''), nullif(full_name, ''), email)"
    " FROM keel_users WHERE id = ANY(%s::bigint[])",
    "groups": "SELECT id::text, name FROM keel_groups WHERE id = ANY(%s::bigint[])",
}
# What the actor did, for events whose summary reads as a report rather than a sentence.
_DID = {
    "login_succeeded": "signed in",
    "login_failed": "failed to sign in",
    "session_logout": "signed out",
    "password_changed_self": "changed their password",
    "reauth_succeeded": "confirmed their password",
    "mfa_enabled": "turned on two-step sign-in",
    "mfa_disabled": "turned off two-step sign-in",
}

# Acting users are named apart from targets: a site may declare its own table called "users".
_ACTORS = "@actors"

Names = dict[tuple[str, str], str]


async def target_names(request: web.Request, rows: list[audit.AuditRow]) -> Names:
    """The current name of each record (and acting user) the events point at: one query per
    resource. A record that no longer exists has no entry, so it is shown without a link."""
    admin = request.app[ADMIN]
    wanted: dict[str, set[str]] = {}
    for r in rows:
        if r.actor_id is not None:
            wanted.setdefault(_ACTORS, set()).add(str(r.actor_id))
        slug = r.target_resource or ""
        b = admin.get(slug)
        if not r.target_id:
            continue
        if slug in _OWN and b is None and r.target_id.isdigit():
            wanted.setdefault(slug, set()).add(r.target_id)
        elif b is not None and b.keyed and not b.composite:
            wanted.setdefault(b.slug, set()).add(r.target_id)
    names: Names = {}
    if not wanted:
        return names
    async with request.app[keys.POOL].connection() as conn:
        for slug, ids in wanted.items():
            if slug == _ACTORS or (slug in _OWN and slug not in admin):
                query = _OWN_NAMES["users" if slug == _ACTORS else slug]
                cur = await conn.execute(query, [sorted(int(i) for i in ids)])
                names.update({(slug, k): v for k, v in await cur.fetchall()})
                continue
            b = admin[slug]
            found = await lookup.labels(conn, b.table, b.display_column, b.pk, sorted(ids))
            names.update({(slug, k): v for k, v in found.items()})
    return names


def _target(request: web.Request, r: audit.AuditRow, names: Names) -> tuple[str, str | None] | None:
    """(the target as words, its page while it exists), or None for events about no record."""
    slug, key = r.target_resource or "", r.target_id
    if not slug or not key:
        return None
    b = request.app[ADMIN].get(slug)
    name = names.get((slug, key))
    if b is not None:
        thing = singular(b.title).lower()
        shown = name if name and b.display_column != b.pk else f"#{key}"
    elif slug in _OWN:
        thing, shown = _OWN[slug], name or f"#{key}"
    else:
        return f"{slug} #{key}", None
    url = f"/admin/{slug}/{rowkey.segment(key)}/" if name is not None else None
    return f"{thing} {shown}", url


def event_items(
    request: web.Request, rows: list[audit.AuditRow], names: Names
) -> list[dict[str, Any]]:
    """Each event as a sentence: who did what to which record, by its name, linked while the
    record exists; events about no record keep their own summary.

    `title`/`text`/`url` are the dashboard's compact line (the record first, the actor last);
    `sentence` is the audit log's: parts of (text, link or None), the actor first."""
    admin = request.app[ADMIN]
    items = []
    for r in rows:
        actor = r.actor_email or r.os_actor or "Keel"
        actor_name = names.get((_ACTORS, str(r.actor_id))) if r.actor_id is not None else None
        actor_url = f"/admin/users/{r.actor_id}/" if actor_name is not None else None
        b = admin.get(r.target_resource or "")
        title, url = r.summary or r.event_type, None
        if b is not None and r.event_type in _VERBS and r.target_id:
            name = names.get((b.slug, r.target_id))
            thing = singular(b.title).lower()
            shown = name if name and b.display_column != b.pk else r.target_id
            # The record first, the actor last: a line cut short on a desktop keeps the what.
            title = f"{_VERBS[r.event_type].capitalize()} {thing} {shown}"
            if r.event_type == "update" and r.changes:
                title += ": " + ", ".join(b.label(f).lower() for f in sorted(r.changes))
            title += f" by {actor}"
            if name is not None and r.event_type != "delete":
                url = f"/admin/{b.slug}/{rowkey.segment(r.target_id)}/"
        items.append(
            {
                "id": r.id,
                "title": title,
                "text": None if title.endswith(actor) or actor in title else actor,
                "when": r.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                "when_iso": r.at.isoformat(),
                "tone": _TONES.get(r.event_type, "info"),
                "url": url,
                "sentence": _sentence(request, r, names, actor_name or actor, actor_url),
                "event_type": r.event_type,
                "outcome": r.outcome,
            }
        )
    return items


def _sentence(
    request: web.Request, r: audit.AuditRow, names: Names, actor: str, actor_url: str | None
) -> list[tuple[str, str | None]]:
    """ "Ana Admin changed booking Smith (status)": the actor and the record as links."""
    target = _target(request, r, names)
    who: list[tuple[str, str | None]] = [(actor, actor_url)]
    verb = _VERBS.get(r.event_type) or _OWN_VERBS.get(r.event_type)
    if verb is not None and target is not None:
        words, url = target
        parts = [*who, (f" {verb} ", None)]
        parts.append((words, None if verb == "deleted" else url))
        if verb == "changed" and r.changes:
            b = request.app[ADMIN].get(r.target_resource or "")
            label = b.label if b is not None else (lambda f: f.replace("_", " "))
            parts.append(
                (" (" + ", ".join(label(f).lower() for f in sorted(r.changes)) + ")", None)
            )
        return parts
    if r.event_type in _DID:
        subject = r.actor_email or str(r.metadata.get("email") or "") or actor
        parts = [
            (actor if r.actor_id is not None else subject, actor_url),
            (f" {_DID[r.event_type]}", None),
        ]
        reason = r.metadata.get("reason")
        if r.event_type == "login_failed" and isinstance(reason, str):
            parts.append((f" ({reason.replace('_', ' ')})", None))
        return parts
    # Other events keep their own summary, prefixed by who acted; the target follows as a link.
    parts = [*who, (": ", None), (r.summary or r.event_type, None)]
    if target is not None and target[1] is not None:
        parts += [(" — ", None), target]
    return parts
