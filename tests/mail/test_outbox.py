"""MAIL-1, MAIL-3: mail is queued with the change that causes it, from safe embedded templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app import mail
from app.errors import Invalid, KeelError

WHEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
FACTS = {"email": "bob@example.com", "when": WHEN, "ip": "203.0.113.9", "device": "Firefox"}
CONTEXTS: dict[str, dict[str, Any]] = {
    "password_reset": {
        **FACTS,
        "link": "https://ops.example.com/reset/T0K3N",
        "expires_minutes": 30,
    },
    "password_changed": FACTS,
    "account_locked": {**FACTS, "until": WHEN + timedelta(minutes=15)},
    "emergency_access": {
        **FACTS,
        "link": "https://ops.example.com/recover/T0K3N",
        "expires_minutes": 15,
        "operator": "root@host1",
        "reason": "lost authenticator",
    },
    "test": {"when": WHEN},
}


async def test_mail_is_queued_only_if_the_transaction_commits(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    with pytest.raises(ZeroDivisionError):
        async with conn.transaction():
            await mail.enqueue(
                conn, to="bob@example.com", template="test", context=CONTEXTS["test"]
            )
            1 / 0  # noqa: B018
    assert (await mail.queue_status(conn)).counts["pending"] == 0
    async with conn.transaction():
        mail_id = await mail.enqueue(
            conn, to="bob@example.com", template="password_changed", context=FACTS
        )
    row = await (
        await conn.execute(
            "SELECT to_addr, subject, status, attempts FROM keel_outbox WHERE id = %s", (mail_id,)
        )
    ).fetchone()
    assert row == ("bob@example.com", "Your Keel password was changed", "pending", 0)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_template_renders_text_and_html_without_remote_content(name: str) -> None:
    rendered = mail.render(name, {**CONTEXTS[name], "site_name": "Acme Ops"})
    assert "Acme Ops" in rendered.subject and "Acme Ops" in rendered.text
    assert "<html" in rendered.html and "<html" not in rendered.text
    # MAIL-3: no remote images, no tracking: the only URL is the link the mail is about.
    assert "<img" not in rendered.html and "src=" not in rendered.html
    urls = set(re.findall(r"https?://[^\s\"<]+", rendered.html))
    assert urls <= {CONTEXTS[name].get("link")}


@pytest.mark.parametrize("name", sorted(set(CONTEXTS) - {"test"}))
def test_security_mail_says_when_where_and_what_to_do(name: str) -> None:
    rendered = mail.render(name, CONTEXTS[name])
    for body in (rendered.text, rendered.html):
        assert "2024-05-01 09:30 UTC" in body
        assert "203.0.113.9" in body and "Firefox" in body
        assert "If this was not you" in body


def test_links_reach_the_mail_but_values_are_escaped_in_html() -> None:
    hostile = {**CONTEXTS["password_reset"], "device": "<script>alert(1)</script>"}
    rendered = mail.render("password_reset", hostile)
    assert "https://ops.example.com/reset/T0K3N" in rendered.text
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<script>alert(1)</script>" in rendered.text  # plain text is not HTML


def test_missing_facts_and_unknown_templates_are_refused() -> None:
    with pytest.raises(KeelError, match="needs ip, device"):
        mail.render("password_changed", {"email": "b@x.io", "when": WHEN})
    with pytest.raises(KeelError, match="unknown mail template"):
        mail.render("newsletter", {})


@pytest.mark.parametrize(
    "to",
    [
        "",
        "no-at-sign",
        "bob@example.com\r\nBcc: eve@example.com",
        "Bob <bob@example.com>",
        "bob@example.com, eve@example.com",
        "bob@@example.com",
        "x" * 65 + "@example.com",
        "bob@" + "a" * 300 + ".com",
        "bob@exa mple.com",
        "bob\x00@example.com",
        None,
        42,
    ],
)
async def test_bad_recipients_are_invalid(conn: psycopg.AsyncConnection[Any], to: Any) -> None:
    """Header injection and multiple recipients are impossible by construction."""
    with pytest.raises(Invalid):
        await mail.enqueue(conn, to=to, template="test", context=CONTEXTS["test"])


async def test_queue_status_and_purge(conn: psycopg.AsyncConnection[Any]) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    for _ in range(3):
        await mail.enqueue(conn, to="a@example.com", template="test", context=CONTEXTS["test"])
    await conn.execute(
        "UPDATE keel_outbox SET status = 'sent', sent_at = %s WHERE id = (SELECT min(id) FROM keel_outbox)",
        (old,),
    )
    await conn.execute(
        "UPDATE keel_outbox SET status = 'failed', last_error = '550 no'"
        " WHERE id = (SELECT max(id) FROM keel_outbox)"
    )
    status = await mail.queue_status(conn)
    assert status.counts == {"pending": 1, "sending": 0, "sent": 1, "failed": 1}
    assert status.oldest_pending is not None
    assert [e["error"] for e in status.last_errors] == ["550 no"]
    assert await mail.purge_sent(conn, older_than=timedelta(days=30)) == 1
    assert (await mail.queue_status(conn)).counts["sent"] == 0


async def test_hostile_request_values_are_bounded_and_cleaned(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """A NUL byte or a 10 MB user agent from a request must not break the change it rides with."""
    context = {**FACTS, "device": "Evil\x00Agent\r\n" + "A" * 10_000_000, "ip": "1.2.3.4\x1b[31m"}
    mail_id = await mail.enqueue(
        conn, to="bob@example.com", template="password_changed", context=context
    )
    row = await (
        await conn.execute("SELECT body_text FROM keel_outbox WHERE id = %s", (mail_id,))
    ).fetchone()
    assert row is not None and "Evil Agent" in row[0] and len(row[0]) < 5000
    assert "\x00" not in row[0] and "\x1b" not in row[0]
