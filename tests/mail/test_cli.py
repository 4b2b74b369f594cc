"""MAIL-2, CLI-1: `keel mail test` and `keel mail status` as an operator runs them."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from app import mail
from tests.helpers import assert_no_traceback, keel, keel_env
from tests.mail.conftest import SmtpServer


def _env(database_url: str, server: SmtpServer | None = None) -> dict[str, str]:
    extra = {"KEEL_DATABASE_URL": database_url}
    if server:
        extra |= {
            "KEEL_SMTP_HOST": server.host,
            "KEEL_SMTP_PORT": str(server.port),
            "KEEL_SMTP_TLS": "none",
            "KEEL_MAIL_FROM": "ops@example.com",
        }
    return keel_env(**extra)


def test_mail_test_sends_now_and_reports_the_server_reply(
    database_url: str, smtp: SmtpServer
) -> None:
    proc = keel("mail", "test", "--to", "me@example.com", env=_env(database_url, smtp))
    assert proc.returncode == 0, proc.stderr
    assert "accepted by 127.0.0.1" in proc.stdout and "250 2.0.0 Ok: queued as TEST" in proc.stdout
    [msg] = smtp.handler.messages
    assert msg["To"] == "me@example.com" and msg["From"] == "ops@example.com"
    assert "outgoing mail works" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_mail_test_reports_a_refusal(database_url: str, smtp_refusing: SmtpServer) -> None:
    proc = keel("mail", "test", "--to", "me@example.com", env=_env(database_url, smtp_refusing))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Problem: the test message to me@example.com was not accepted")
    assert "550 5.1.1 No such user here" in proc.stderr and "Fix: " in proc.stderr
    assert_no_traceback(proc)
    status = json.loads(keel("mail", "status", "--json", env=_env(database_url)).stdout)
    assert status["counts"]["failed"] == 1  # a test is not retried


@pytest.mark.parametrize(
    "to", ["not-an-address", "a@b.c\r\nBcc: x@y.z", "Me <me@example.com>", "x" * 400]
)
def test_mail_test_refuses_bad_addresses(database_url: str, to: str) -> None:
    proc = keel("mail", "test", "--to", to, env=_env(database_url))
    assert proc.returncode == 2 and proc.stderr.startswith("Problem: --to")
    assert_no_traceback(proc)


def test_mail_test_without_smtp_explains_what_to_set(database_url: str) -> None:
    proc = keel("mail", "test", "--to", "me@example.com", env=_env(database_url))
    assert proc.returncode == 1 and "smtp_host is not set" in proc.stderr
    assert "Fix: set smtp_host" in proc.stderr


async def test_mail_status_shows_the_queue(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await _fill(conn)
    proc = keel("mail", "status", env=_env(database_url))
    assert proc.returncode == 0
    assert "pending 2, sending 0, sent 0, failed 1" in proc.stdout
    assert "421 mailbox busy" in proc.stdout and "smtp_host is not set" in proc.stdout
    data = json.loads(keel("mail", "status", "--json", env=_env(database_url)).stdout)
    assert data["counts"] == {"pending": 2, "sending": 0, "sent": 0, "failed": 1}
    assert data["oldest_pending"] and data["smtp_host"] is None


async def _fill(conn: psycopg.AsyncConnection[Any]) -> None:
    for _ in range(3):
        await mail.enqueue(conn, to="a@example.com", template="test", context={"when": "now"})
    await conn.execute(
        "UPDATE keel_outbox SET status = 'failed', attempts = 8, last_error = '421 mailbox busy'"
        " WHERE id = (SELECT max(id) FROM keel_outbox)"
    )


async def test_doctor_checks_smtp_and_the_queue(
    config: Any, smtp: SmtpServer, database_url: str
) -> None:
    """The handshake when SMTP is configured; a warning when it is not, and when mail piles up
    unsent."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await _fill(conn)
    checks = await mail.doctor_checks(config)
    assert [(c.name, c.status) for c in checks] == [("smtp", "warn"), ("mail queue", "warn")]
    assert "smtp_host is not set" in checks[0].detail and "not sent" in checks[0].detail
    assert "smtp_host is not set" in checks[1].detail
    configured = config.with_values(smtp_host=smtp.host, smtp_port=smtp.port, smtp_tls="none")
    checks = await mail.doctor_checks(configured)
    assert [(c.name, c.status) for c in checks] == [("smtp", "ok"), ("mail queue", "warn")]
    down = configured.with_values(smtp_port=1)
    assert (await mail.doctor_checks(down))[0].status == "fail"
