"""A site project written by `keel new`, the CLI run as a real process in it, real approvers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from app import audit
from app.authority import users
from app.scaffold import write_project
from tests import zygote
from tests.helpers import REPO, cheap_hasher, keel_env

PASSWORD = "plum orbit kettle 4711"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Keel = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "acme").root


def _runner(project: Path, env: dict[str, str]) -> Keel:
    def run(*args: str, input: str | None = None, cwd: Path | None = None) -> Result:
        where = [] if cwd is not None else ["--site-dir", str(project)]
        proc = zygote.run([*args, *where], env=env, input=input, cwd=cwd or REPO)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def keel(project: Path) -> Keel:
    """`keel(verb…)` in the project, without a database."""
    return _runner(project, keel_env(site=False))


@pytest.fixture
def keel_db(project: Path, database_url: str, secret_key: str) -> Keel:
    """`keel(verb…)` in the project, with the database of `--as`."""
    return _runner(
        project, keel_env(site=False, DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key)
    )


@pytest.fixture
async def people(database_url: str, secret_key: str) -> dict[str, str]:
    """Role → email of real Keel users, all with PASSWORD; one inactive administrator.

    The password is hashed with the tests' cheap Argon2id parameters: approvals check it in a
    `keel` process each time (verifying reads the cost from the stored hash), and these tests are
    about who may approve, not about hashing."""
    hasher = cheap_hasher()
    password_hash = await hasher.hash(PASSWORD)
    hasher.close()
    ctx = audit.Context(audit_key=audit.derive_key(secret_key), os_actor="tests@localhost")
    made: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for name, role in (
            ("admin1", "administrator"), ("admin2", "administrator"), ("dev", "developer"),
            ("staff", "staff"), ("gone", "administrator"),
        ):  # fmt: skip
            email = f"{name}-{secrets.token_hex(3)}@example.com"
            user = await users.create(
                conn, ctx, None, email=email, role=role, password_hash=password_hash, via="cli"
            )
            if name == "gone":
                await conn.execute(
                    "UPDATE keel_users SET is_active = false WHERE id = %s", (user.id,)
                )
            made[name] = email
    return made


def audit_rows(database_url: str) -> list[tuple[str, str | None, str | None, dict[str, object]]]:
    """(event type, actor email, target id, metadata) of the governance events, oldest first."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT event_type, actor_email, target_id, metadata FROM keel_audit"
            " WHERE event_type LIKE 'ai_%%' OR event_type LIKE 'memory_%%' ORDER BY id"
        ).fetchall()


def proposal_id(text: str) -> str:
    import re

    m = re.search(r"\b(\d{8}-[0-9a-f]{6})\b", text)
    assert m, text
    return m.group(1)
