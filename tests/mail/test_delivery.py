"""MAIL-1: delivery over real SMTP, retries with backoff, failure, and no double sends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app import mail
from app.config import Config
from app.mail import SmtpSettings, Worker
from app.mail.delivery import console_send
from tests.helpers import free_port
from tests.mail.conftest import SmtpServer

Connector = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]
WHEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


async def _queue(
    conn: psycopg.AsyncConnection[Any], n: int = 1, to: str = "bob@example.com"
) -> list[int]:
    return [
        await mail.enqueue(conn, to=to, template="test", context={"when": WHEN}) for _ in range(n)
    ]


async def _row(conn: psycopg.AsyncConnection[Any], mail_id: int) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT status, attempts, last_error, next_attempt_at, sent_at, locked_by"
        " FROM keel_outbox WHERE id = %s",
        (mail_id,),
    )
    names = ("status", "attempts", "last_error", "next_attempt_at", "sent_at", "locked_by")
    return dict(zip(names, await cur.fetchone() or (), strict=True))


async def test_a_queued_message_is_delivered_with_both_bodies(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp: SmtpServer
) -> None:
    [mail_id] = await _queue(conn)
    assert await Worker(connector, smtp.settings()).run_once() == 1
    [msg] = smtp.handler.messages
    assert msg["To"] == "bob@example.com" and msg["Subject"] == "Test message from Keel"
    assert msg["From"] == "Keel <keel@example.com>" and msg["Auto-Submitted"] == "auto-generated"
    assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
    row = await _row(conn, mail_id)
    assert row["status"] == "sent" and row["attempts"] == 1 and row["locked_by"] is None
    assert await Worker(connector, smtp.settings()).run_once() == 0  # nothing left to send


async def test_two_workers_never_send_the_same_message_twice(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp: SmtpServer
) -> None:
    ids = await _queue(conn, 30)
    workers = [Worker(connector, smtp.settings(), batch=4, name=f"w{i}") for i in range(2)]

    async def drain(worker: Worker) -> int:
        total = 0
        while n := await worker.run_once():
            total += n
        return total

    counts = await asyncio.gather(*(drain(w) for w in workers))
    assert sum(counts) == 30 and all(counts)  # both worked, together exactly once each
    ids_seen = sorted(
        int(m["Message-ID"].rsplit(".keel", 1)[1].split("@")[0]) for m in smtp.handler.messages
    )
    assert ids_seen == ids
    assert (await mail.queue_status(conn)).counts["sent"] == 30


async def test_temporary_refusals_are_retried_with_backoff_then_fail(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp_busy: SmtpServer
) -> None:
    [mail_id] = await _queue(conn)
    worker = Worker(connector, smtp_busy.settings(), max_attempts=3, base_delay=30)
    now = datetime.now(UTC)
    await worker.run_once(now)
    row = await _row(conn, mail_id)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "451" in row["last_error"] and row["next_attempt_at"] == now + timedelta(seconds=30)
    assert await worker.run_once(now + timedelta(seconds=29)) == 0  # not due yet
    await worker.run_once(now + timedelta(seconds=30))
    row = await _row(conn, mail_id)
    assert row["attempts"] == 2 and row["next_attempt_at"] == now + timedelta(seconds=90)
    await worker.run_once(now + timedelta(seconds=90))
    row = await _row(conn, mail_id)
    assert row["status"] == "failed" and row["attempts"] == 3 and "451" in row["last_error"]
    assert await worker.run_once(now + timedelta(days=1)) == 0
    assert smtp_busy.handler.messages == []


async def test_a_permanent_refusal_fails_at_once_with_the_servers_words(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp_refusing: SmtpServer
) -> None:
    [mail_id] = await _queue(conn)
    await Worker(connector, smtp_refusing.settings()).run_once()
    row = await _row(conn, mail_id)
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "550" in row["last_error"] and "No such user" in row["last_error"]
    status = await mail.queue_status(conn)
    assert status.counts["failed"] == 1 and "550" in status.last_errors[0]["error"]


async def test_an_unreachable_server_keeps_the_message_for_later(
    conn: psycopg.AsyncConnection[Any], connector: Connector
) -> None:
    [mail_id] = await _queue(conn)
    settings = SmtpSettings("127.0.0.1", free_port(), tls="none", sender="k@example.com", timeout=2)
    await Worker(connector, settings).run_once()
    row = await _row(conn, mail_id)
    assert row["status"] == "pending" and row["last_error"] and "password" not in row["last_error"]


async def test_a_message_abandoned_mid_send_is_picked_up_after_its_lease(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp: SmtpServer
) -> None:
    """A worker that dies after claiming does not strand the message forever."""
    [mail_id] = await _queue(conn)
    now = datetime.now(UTC)
    crashed = Worker(connector, smtp.settings(), lease=60, name="crashed")
    assert len(await crashed.claim(now)) == 1
    other = Worker(connector, smtp.settings(), name="other")
    assert await other.run_once(now + timedelta(seconds=59)) == 0
    assert await other.run_once(now + timedelta(seconds=61)) == 1
    assert (await _row(conn, mail_id))["status"] == "sent" and len(smtp.handler.messages) == 1


def test_without_smtp_mail_waits_except_in_demo(config: Config) -> None:
    assert mail.worker_for(config, None) is None
    demo = config.with_values(demo=True)
    worker = mail.worker_for(demo, None)
    assert worker is not None and worker.send is console_send


async def test_demo_prints_mail_with_its_links_to_the_console(
    conn: psycopg.AsyncConnection[Any], connector: Connector, caplog: pytest.LogCaptureFixture
) -> None:
    """MAIL-3: with no SMTP in demo, the mail (token links included) goes to the log."""
    context = {
        "email": "bob@example.com",
        "when": WHEN,
        "ip": "1.2.3.4",
        "device": "Firefox",
        "link": "http://127.0.0.1:8000/reset/DEMO-TOKEN",
        "expires_minutes": 30,
    }
    mail_id = await mail.enqueue(
        conn, to="bob@example.com", template="password_reset", context=context
    )
    worker = Worker(connector, SmtpSettings("", sender="k@example.com"), send=console_send)
    with caplog.at_level(logging.INFO, logger="keel.mail"):
        await worker.run_once()
    assert "http://127.0.0.1:8000/reset/DEMO-TOKEN" in caplog.text
    assert (await _row(conn, mail_id))["status"] == "sent"


async def test_serve_delivers_queued_mail_in_the_background(
    config: Config, aiohttp_client: Any, smtp: SmtpServer, database_url: str
) -> None:
    """The worker runs inside the app's lifecycle (cleanup_ctx) and stops with it."""
    from app.web.app import build_app

    cfg = config.with_values(smtp_host=smtp.host, smtp_port=smtp.port, smtp_tls="none")
    app = build_app(cfg)
    if mail.mail_worker not in app.cleanup_ctx:
        mail.setup(app)
    client = await aiohttp_client(app)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await _queue(conn)
    for _ in range(100):
        if smtp.handler.messages:
            break
        await asyncio.sleep(0.05)
    assert len(smtp.handler.messages) == 1
    await client.close()


async def test_a_sealed_link_is_filled_in_only_when_sent_then_forgotten(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp: SmtpServer
) -> None:
    """INV-1: the outbox row never holds the reset token; the worker derives it from the
    row's seal with the servers' key, sends it, and clears the seal."""
    from app.mail import seal as sealing

    key = sealing.seal_key(b"k" * 32)
    token, seal = sealing.new_sealed_token(key)
    context = {
        "email": "eve@example.com", "when": WHEN, "ip": "203.0.113.9", "device": "Firefox",
        "link": f"https://ops.example.com/reset/{sealing.PLACEHOLDER}", "expires_minutes": 30,
    }  # fmt: skip
    mail_id = await mail.enqueue(
        conn, to="eve@example.com", template="password_reset", context=context, seal=seal
    )
    cur = await conn.execute(
        "SELECT body_text || body_html FROM keel_outbox WHERE id = %s", (mail_id,)
    )
    assert token not in (await cur.fetchone())[0]
    assert await Worker(connector, smtp.settings(), seal_key=key).run_once() == 1
    [msg] = smtp.handler.messages
    text = msg.get_body(("plain",)).get_content()
    assert f"https://ops.example.com/reset/{token}" in text and sealing.PLACEHOLDER not in text
    assert token in msg.get_body(("html",)).get_content()
    cur = await conn.execute("SELECT status, seal FROM keel_outbox WHERE id = %s", (mail_id,))
    assert await cur.fetchone() == ("sent", None)


async def test_a_sealed_mail_is_never_sent_with_its_placeholder(
    conn: psycopg.AsyncConnection[Any], connector: Connector, smtp: SmtpServer
) -> None:
    """A worker without the key (no secret_key) fails the mail instead of sending a dead link;
    a seal without the placeholder in both bodies is refused when queued."""
    from app.errors import KeelError
    from app.mail import seal as sealing

    _, seal = sealing.new_sealed_token(sealing.seal_key(b"k" * 32))
    context = {
        "email": "eve@example.com", "when": WHEN, "ip": "203.0.113.9", "device": "Firefox",
        "link": f"https://ops.example.com/reset/{sealing.PLACEHOLDER}", "expires_minutes": 30,
    }  # fmt: skip
    mail_id = await mail.enqueue(
        conn, to="eve@example.com", template="password_reset", context=context, seal=seal
    )
    await Worker(connector, smtp.settings()).run_once()
    assert smtp.handler.messages == []
    row = await _row(conn, mail_id)
    assert row["status"] == "failed" and "secret_key" in row["last_error"]
    plain = {**context, "link": "https://ops.example.com/reset/x"}
    with pytest.raises(KeelError, match="placeholder"):
        await mail.enqueue(
            conn, to="eve@example.com", template="password_reset", context=plain, seal=seal
        )
