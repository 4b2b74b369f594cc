"""The outbox table: render embedded templates and enqueue in the caller's transaction (MAIL-1, MAIL-3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jinja2
import psycopg

from app.errors import Invalid, KeelError
from app.mail.seal import PLACEHOLDER, SEAL_BYTES

# Template name → subject. Each has mail/<name>.txt and mail/<name>.html; the keys listed
# are required in the context so a caller cannot forget the facts MAIL-3 asks for.
_SECURITY = ("email", "when", "ip", "device")
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "password_reset": (
        "Reset your {{ site_name }} password",
        (*_SECURITY, "link", "expires_minutes"),
    ),
    "password_changed": ("Your {{ site_name }} password was changed", _SECURITY),
    "account_locked": ("Your {{ site_name }} account was locked", _SECURITY),
    "emergency_access": (
        "Emergency access to your {{ site_name }} account",
        (*_SECURITY, "link", "expires_minutes", "operator", "reason"),
    ),
    "invitation": (
        "You are invited to {{ site_name }}",
        ("email", "role", "inviter", "link", "expires_in"),
    ),
    "test": ("Test message from {{ site_name }}", ("when",)),
}
# One address, no display name, nothing that could smuggle a header (CR/LF, commas).
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)
STATUSES = ("pending", "sending", "sent", "failed")
_MAX_VALUE = 2000  # longer than any link Keel builds
# Facts a template mentions only when given.
_OPTIONAL: dict[str, Any] = {
    "site_name": "Keel",
    "operator": None,
    "reason": None,
    "until": None,
    "by_other": False,
    "sessions_ended": False,
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def _when(value: object) -> str:
    if isinstance(value, datetime):
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app.web", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default=False, default_for_string=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["when"] = _when
    return env


def _safe(value: Any) -> Any:
    """Request-derived text (user agent, IP) is bounded and stripped of control characters:
    PostgreSQL refuses NUL, and a 10 MB user agent has no place in a mail."""
    if not isinstance(value, str):
        return value
    text = "".join(c if c.isprintable() else " " for c in value[:_MAX_VALUE])
    return text.encode("utf-8", "replace").decode("utf-8")


def check_address(to: str) -> str:
    if not isinstance(to, str) or len(to) > 254 or not _ADDRESS.match(to):
        raise Invalid(
            "that is not a single email address",
            fields={"to": "one address like alice@example.com"},
            fix="give one plain address, without a name or angle brackets",
        )
    return to


def render(template: str, context: Mapping[str, Any]) -> Rendered:
    """Subject, plain text and HTML from the embedded templates; missing facts are errors."""
    if template not in TEMPLATES:
        raise KeelError(
            f"unknown mail template {template!r}", fix=f"use one of {sorted(TEMPLATES)}"
        )
    subject_src, required = TEMPLATES[template]
    missing = [k for k in required if k not in context]
    if missing:
        raise KeelError(
            f"mail template {template!r} needs {', '.join(missing)}",
            why="security mail must say when, from which IP and device, and what to do",
            fix="pass them in the context",
        )
    ctx = {**_OPTIONAL, **{k: _safe(v) for k, v in context.items()}}
    env = _env()
    subject = " ".join(env.from_string(subject_src).render(ctx).split())[:300]
    ctx["subject"] = subject
    text = env.get_template(f"mail/{template}.txt").render(ctx)
    html = env.get_template(f"mail/{template}.html").render(ctx)
    return Rendered(subject, re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", html)


async def enqueue(
    conn: psycopg.AsyncConnection[Any],
    *,
    to: str,
    template: str,
    context: Mapping[str, Any],
    now: datetime | None = None,
    seal: bytes | None = None,
) -> int:
    """Queue one message in the caller's transaction: it is sent only if that commits (MAIL-1).

    With `seal` (app/mail/seal.py), the bodies carry `seal.PLACEHOLDER` where a token goes and
    the worker derives the token when it sends: the token itself is never stored (INV-1)."""
    rendered = render(template, context)
    if seal is not None and (
        len(seal) != SEAL_BYTES
        or PLACEHOLDER not in rendered.text
        or PLACEHOLDER not in rendered.html
    ):
        raise KeelError(
            f"sealed mail {template!r} needs a {SEAL_BYTES}-byte seal and the placeholder in both bodies",
            fix="build the link with app.mail.seal.PLACEHOLDER where the token goes",
        )
    cur = await conn.execute(
        "INSERT INTO keel_outbox (template, to_addr, subject, body_text, body_html, created_at,"
        " next_attempt_at, seal)"
        " VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), coalesce(%s, now()), %s)"
        " RETURNING id",
        (
            template, check_address(to), rendered.subject, rendered.text, rendered.html, now, now,
            seal,
        ),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class QueueStatus:
    counts: dict[str, int]
    oldest_pending: datetime | None
    last_errors: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "oldest_pending": self.oldest_pending.isoformat() if self.oldest_pending else None,
            "last_errors": self.last_errors,
        }


async def queue_status(conn: psycopg.AsyncConnection[Any], errors: int = 5) -> QueueStatus:
    """Counts by status, the oldest waiting message and the latest errors (MAIL-2, OPS-5)."""
    cur = await conn.execute("SELECT status, count(*) FROM keel_outbox GROUP BY status")
    counts = dict.fromkeys(STATUSES, 0) | {s: int(n) for s, n in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT min(created_at) FROM keel_outbox WHERE status IN ('pending', 'sending')"
    )
    oldest = (await cur.fetchone() or (None,))[0]
    cur = await conn.execute(
        "SELECT id, to_addr, subject, status, attempts, last_error, next_attempt_at"
        " FROM keel_outbox WHERE last_error IS NOT NULL"
        " ORDER BY coalesce(sent_at, next_attempt_at) DESC, id DESC LIMIT %s",
        (errors,),
    )
    names = ("id", "to", "subject", "status", "attempts", "error", "next_attempt_at")
    last = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
    for item in last:
        item["next_attempt_at"] = item["next_attempt_at"].isoformat()
    return QueueStatus(counts, oldest, last)


async def purge_sent(
    conn: psycopg.AsyncConnection[Any], *, older_than: timedelta, now: datetime | None = None
) -> int:
    """Delete delivered mail past its retention; for the sweeper (SESS-9). Safe on many hosts."""
    cur = await conn.execute(
        "DELETE FROM keel_outbox WHERE status = 'sent' AND sent_at < coalesce(%s, now()) - %s",
        (now, older_than),
    )
    return cur.rowcount
