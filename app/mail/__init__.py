"""Mail: a transactional outbox in PostgreSQL, delivered in the background by `serve` (MAIL-1..3)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.mail.delivery import SmtpSettings, Worker, console_send, describe, handshake
from app.mail.outbox import TEMPLATES, QueueStatus, enqueue, purge_sent, queue_status, render
from app.mail.seal import PLACEHOLDER, new_sealed_token, seal_key

if TYPE_CHECKING:
    import psycopg
    from aiohttp import web

    from app.config import Config
    from app.ops.doctor import Check

__all__ = [
    "PLACEHOLDER",
    "TEMPLATES",
    "QueueStatus",
    "SmtpSettings",
    "Worker",
    "doctor_checks",
    "enqueue",
    "mail_worker",
    "new_sealed_token",
    "purge_sent",
    "queue_status",
    "render",
    "seal_key",
    "send_now",
    "setup",
    "worker_seal_key",
]

POLL_INTERVAL = 2.0


def setup(app: web.Application) -> None:
    """Listed in FEATURES: runs the delivery worker for as long as the app runs."""
    app.cleanup_ctx.append(mail_worker)


def worker_for(config: Config, connect: Any) -> Worker | None:
    """A worker for this configuration, or None when mail must stay queued.

    Without smtp_host, demo mode prints mail to the console log (MAIL-3); anywhere else the
    mail waits, visible in `keel mail status` and `keel doctor`, until SMTP is configured."""
    key = worker_seal_key(config)
    if config.smtp_host:
        return Worker(connect, SmtpSettings.from_config(config), seal_key=key)
    if config.demo:
        return Worker(connect, SmtpSettings.from_config(config), send=console_send, seal_key=key)
    return None


def worker_seal_key(config: Config) -> dict[str, bytes] | None:
    """The keys that turn an outbox row's seal into its link token (app/mail/seal.py), by key
    id, the signing key first: a mail queued before a key rotation still gets its token."""
    from app import audit

    keys = {kid: seal_key(k) for kid, k in audit.ring_keys(config.ring).items()}
    return keys or None


async def mail_worker(app: web.Application) -> AsyncIterator[None]:
    """`app.cleanup_ctx` entry: start delivering after the pool opens, stop before it closes."""
    from app.web import keys

    worker = worker_for(app[keys.CONFIG], app[keys.POOL].connection)
    if worker is None:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(stop, POLL_INTERVAL), name="keel-mail")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=40)  # an SMTP exchange in flight may finish
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def send_now(
    conn: psycopg.AsyncConnection[Any],
    worker: Worker,
    *,
    to: str,
    template: str,
    context: dict[str, Any],
) -> tuple[int, str]:
    """Queue one message and deliver it at once, no retry: `keel mail test` (MAIL-2).

    Raises the SMTP error after recording it on the row; returns (id, server reply)."""
    async with conn.transaction():
        mail_id = await enqueue(conn, to=to, template=template, context=context)
    now = datetime.now(UTC)
    [mail] = await worker.claim(now, only_id=mail_id)
    return mail_id, await worker.deliver(mail, now, retry=False)


async def doctor_checks(config: Config) -> list[Check]:
    """OPS-5, MAIL-2: the SMTP handshake when configured, and the state of the queue."""
    from app.db.pool import connect
    from app.errors import KeelError
    from app.ops.doctor import FAIL, OK, WARN, Check

    checks: list[Check] = []
    if config.smtp_host:
        settings = SmtpSettings.from_config(config)
        try:
            reply = await asyncio.to_thread(handshake, settings)
            checks.append(Check("smtp", OK, f"{settings.host}:{settings.port} answers ({reply})"))
        except Exception as exc:
            checks.append(Check("smtp", FAIL, f"{settings.host}:{settings.port}: {describe(exc)}"))
    else:
        checks.append(
            Check(
                "smtp",
                WARN,
                "smtp_host is not set: password resets and security notices are not sent",
            )
        )
    try:
        async with connect(config) as conn:
            status = await queue_status(conn)
    except (KeelError, OSError) as exc:
        return [*checks, Check("mail queue", WARN, f"not checked: {exc}")]
    except Exception as exc:  # no outbox table yet (migrations pending): migrations check says so
        return [*checks, Check("mail queue", WARN, f"not checked: {type(exc).__name__}")]
    waiting, failed = status.counts["pending"] + status.counts["sending"], status.counts["failed"]
    if waiting and not config.smtp_host:
        checks.append(
            Check(
                "mail queue", WARN, f"{waiting} waiting but smtp_host is not set: nothing is sent"
            )
        )
    elif failed:
        checks.append(
            Check("mail queue", WARN, f"{failed} failed, {waiting} waiting; see keel mail status")
        )
    else:
        checks.append(Check("mail queue", OK, f"{waiting} waiting, none failed"))
    return checks
