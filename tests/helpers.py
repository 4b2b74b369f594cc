"""Shared test helpers: run the CLI as a real process, wait for a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from app.authority.passwords import Cost

REPO = Path(__file__).resolve().parents[1]
# Argon2id at almost no cost, for tests whose sign-ins are not about hashing (the app takes it
# only through authority.setup.TEST_HASHER_COST; see docs/decisions.md).
CHEAP_HASHING = Cost(time_cost=1, memory_cost=1024, parallelism=1)


def keel_env(*, site: bool = True, **extra: str) -> dict[str, str]:
    """A clean environment: no KEEL_* or DATABASE_URL leaking in from the caller.

    The suite's site (the demo, see conftest.py) is kept unless `site=False`: plain Keel."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (k == "KEEL_SITE_DIR" and site)
        or not k.startswith(
            (
                "KEEL_",
                "DATABASE_URL",
                "NOTIFY_",
                "LISTEN_",
                "WATCHDOG_",
                "INVOCATION_ID",
                "JOURNAL_STREAM",
            )
        )
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def keel(
    *args: str, env: Mapping[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=dict(env) if env is not None else keel_env(),
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=REPO,
    )


def spawn_keel(*args: str, env: Mapping[str, str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "app", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        **kw,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[str] | None = None) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


async def outbox_mail(conn: Any, secret: str | bytes) -> list[tuple[str, str]]:
    """(to, text) of every queued mail, oldest first, with sealed tokens filled in the way the
    delivery worker fills them (app/mail/seal.py); the stored body never holds them.
    `secret`: the secret_key, or an audit key (`Context.audit_key`)."""
    from app.audit import derive_key
    from app.mail.seal import seal_key, unseal

    key = seal_key(derive_key(secret) if isinstance(secret, str) else secret)
    cur = await conn.execute("SELECT to_addr, body_text, seal FROM keel_outbox ORDER BY id")
    return [
        (to, unseal(key, seal, body) if seal is not None else body)
        for to, body, seal in await cur.fetchall()
    ]


@dataclass
class Recorder:
    """An SMTP handler (aiosmtpd) that keeps what it receives, or answers RCPT with a fixed
    refusal. Shared by the mail tests and every page test that follows a mailed link."""

    refuse: str | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=email_policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
        return "250 2.0.0 Ok: queued as TEST"


@contextmanager
def smtp_recorder() -> Iterator[tuple[int, Recorder]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) for the block: (port, recorder)."""
    from aiosmtpd.controller import Controller

    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()
