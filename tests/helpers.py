"""Shared test helpers: run the CLI as a real process, wait for a server, listen for sd_notify,
receive mail on a real SMTP server."""

from __future__ import annotations

import os
import re
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
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.authority.passwords import Cost, Hasher
from app.mail import SmtpSettings

if TYPE_CHECKING:
    from aiohttp import web

    from app.config import Config

REPO = Path(__file__).resolve().parents[1]
# Argon2id at almost no cost, for tests whose sign-ins are not about hashing (the app takes it
# only through authority.setup.TEST_HASHER_COST; see docs/decisions.md).
CHEAP_HASHING = Cost(time_cost=1, memory_cost=1024, parallelism=1)


def cheap_hasher() -> Hasher:
    """A Hasher with CHEAP_HASHING, to make the users a `cheap_app` signs in (close it after)."""
    return Hasher(
        max_in_flight=2,
        time_cost=CHEAP_HASHING.time_cost,
        memory_cost=CHEAP_HASHING.memory_cost,
        parallelism=CHEAP_HASHING.parallelism,
    )


def make_config(database_url: str, secret_key: str, **extra: Any) -> Config:
    """The suite's configuration for an app on `database_url`, with `extra` settings."""
    from app.config import load_config

    return load_config(
        env={},
        flags={
            "database_url": database_url,
            "secret_key": secret_key,
            "public_url": "http://127.0.0.1:8000",
            **extra,
        },
    )


def cheap_app(config: Config) -> web.Application:
    """`build_app(config)` hashing with CHEAP_HASHING: for tests whose sign-ins are not about
    hashing (a production Argon2 hash costs 64 MiB and four threads; page tests do hundreds)."""
    from app.authority.setup import TEST_HASHER_COST
    from app.web.app import build_app

    app = build_app(config)
    app[TEST_HASHER_COST] = CHEAP_HASHING
    return app


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
    """`python -m app *args` in the repository, output captured (from the fork server)."""
    from tests import zygote

    return zygote.run(
        args, env=env if env is not None else keel_env(), input=input, timeout=timeout, cwd=REPO
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


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[str] | None = None) -> int:
    """The first status `url` answers; waits up to `timeout` for a server to come up (a loaded
    machine can take tens of seconds to start one: this is no test of start-up speed)."""
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


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def form_sign_in(http: Any, email: str, password: str) -> None:
    """Sign in through the real form with an aiohttp ClientSession whose base is the server
    (its cookie jar must accept 127.0.0.1: `aiohttp.CookieJar(unsafe=True)`)."""
    form = await (await http.get("/login")).text()
    found = CSRF_FIELD.search(form)
    assert found, form[:300]
    resp = await http.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": found.group(1)},
        allow_redirects=False,
    )
    assert resp.status == 303, resp.status


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


# -- sd_notify ------------------------------------------------------------------------------------


@contextmanager
def notify_listener(path: Path, timeout: float = 30) -> Iterator[socket.socket]:
    """A datagram socket at `path` playing systemd's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(timeout)
    try:
        yield sock
    finally:
        sock.close()


def notify_until(sock: socket.socket, wanted: str, limit: float = 60) -> list[str]:
    """The sd_notify messages received up to and including the first that holds `wanted`."""
    got: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        msg = sock.recv(4096).decode()
        got.append(msg)
        if wanted in msg:
            return got
    raise AssertionError(f"{wanted} not received; got {got}")


# -- a real SMTP server ---------------------------------------------------------------------------


@dataclass
class Recorder:
    """An SMTP handler that keeps what it receives, or answers RCPT with a fixed refusal."""

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
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
        return "250 2.0.0 Ok: queued as TEST"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: Recorder

    def settings(self) -> SmtpSettings:
        return SmtpSettings(self.host, self.port, tls="none", sender="Keel <keel@example.com>")


@contextmanager
def smtp_server(handler: Recorder | None = None) -> Iterator[SmtpServer]:
    """aiosmtpd on a free local port, handing what it receives to `handler` (a new Recorder)."""
    from aiosmtpd.controller import Controller

    handler = handler or Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()
