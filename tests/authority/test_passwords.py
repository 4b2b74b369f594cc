"""LOGIN-5/6, INV-1: Argon2id hashing off the event loop, bounded; the password policy."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import psycopg
import pytest

from app.authority import users
from app.authority.passwords import (
    MAX_BYTES,
    Hasher,
    Policy,
    check_policy,
    common_passwords,
    generate,
    hash_new,
)
from app.errors import Invalid
from tests.authority.conftest import make_user

POLICY = {"email": "alice.smith@example.com", "site_name": "Acme Ops", "min_length": 12}


async def test_hashes_are_argon2id_with_the_library_defaults(hasher: Hasher) -> None:
    """LOGIN-5: 64 MiB, 3 passes, 4 lanes; INV-1: a self-describing PHC string."""
    stored = await hasher.hash("a perfectly fine passphrase")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "a perfectly fine passphrase" not in stored
    assert await hasher.verify(stored, "a perfectly fine passphrase") == (True, False)
    assert await hasher.verify(stored, "a perfectly fine passphrasE") == (False, False)


@pytest.mark.parametrize("stored", [None, "", "plaintext", "$argon2id$garbage", "$2b$12$bcrypt"])
async def test_missing_or_malformed_hashes_fail_without_raising(
    fast_hasher: Hasher, stored: str | None
) -> None:
    assert await fast_hasher.verify(stored, "anything at all here") == (False, False)


async def test_outdated_parameters_ask_for_a_rehash(fast_hasher: Hasher, hasher: Hasher) -> None:
    """LOGIN-5: a hash made with weaker parameters verifies and says it needs upgrading."""
    old = await fast_hasher.hash("upgrade me on the next login")
    assert "m=8192,t=1,p=1" in old
    assert await hasher.verify(old, "upgrade me on the next login") == (True, True)


async def test_rehash_on_login_upgrades_the_stored_hash_once(
    conn: psycopg.AsyncConnection[Any], fast_hasher: Hasher, hasher: Hasher
) -> None:
    user_id, _ = await make_user(conn, password=None)
    old = await fast_hasher.hash("upgrade me on the next login")
    await users.write_password(conn, user_id, old, must_change=False)
    assert await users.rehash_on_login(
        conn, hasher, user_id=user_id, stored_hash=old, password="upgrade me on the next login"
    )
    cur = await conn.execute("SELECT password_hash FROM keel_users WHERE id = %s", (user_id,))
    new = (await cur.fetchone())[0]  # type: ignore[index]
    assert new.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await hasher.verify(new, "upgrade me on the next login") == (True, False)
    # Compare-and-set: a second upgrade from the stale hash must not overwrite the new one.
    assert not await users.rehash_on_login(
        conn, hasher, user_id=user_id, stored_hash=old, password="upgrade me on the next login"
    )


async def test_dummy_verify_costs_about_what_a_real_verify_costs(hasher: Hasher) -> None:
    """LOGIN-1: unknown emails take similar time (a dummy Argon2 verify)."""
    stored = await hasher.hash("timing comparison pass")
    await hasher.dummy_verify("warm up the dummy hash")
    started = time.perf_counter()
    await hasher.verify(stored, "wrong guess for timing")
    real = time.perf_counter() - started
    started = time.perf_counter()
    await hasher.dummy_verify("wrong guess for timing")
    dummy = time.perf_counter() - started
    assert 0.5 < dummy / real < 2.0, (real, dummy)


async def test_a_burst_never_runs_more_hashes_than_allowed_and_the_loop_stays_free() -> None:
    """LOGIN-5: 12 logins at once → at most N in flight; the event loop keeps ticking."""
    hasher = Hasher(max_in_flight=2, time_cost=1, memory_cost=32768, parallelism=1)
    stored = await hasher.hash("burst of logins here")
    base = threading.active_count()
    peak = 0
    ticks: list[float] = []

    async def ticker() -> None:
        nonlocal peak
        for _ in range(40):
            ticks.append(time.perf_counter())
            peak = max(peak, threading.active_count() - base)
            await asyncio.sleep(0.005)

    try:
        results = await asyncio.gather(
            ticker(), *(hasher.verify(stored, "burst of logins here") for _ in range(12))
        )
    finally:
        hasher.close()
    assert all(r == (True, False) for r in results[1:])
    assert peak <= 2
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.1, "hashing blocked the event loop"


async def test_a_10_mb_password_is_cheap_and_cannot_match(fast_hasher: Hasher) -> None:
    stored = await fast_hasher.hash("x" * MAX_BYTES)
    started = time.perf_counter()
    ok, _ = await fast_hasher.verify(stored, "y" * (10 * 1024 * 1024))
    assert not ok and time.perf_counter() - started < 1.0
    # A lone surrogate from a hostile form must not raise.
    assert await fast_hasher.verify(stored, "\ud800abc") == (False, False)


# ---- policy (LOGIN-6) --------------------------------------------------------------------


def test_a_long_uncommon_password_passes() -> None:
    assert check_policy("violet tractor under rain", **POLICY) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short one", "at least 12 characters"),
        ("", "Enter a password"),
        (None, "Enter a password"),
        (12345678901234, "Enter a password"),
        ("é" * 600, "at most 1024 bytes"),
        ("q1w2e3r4t5y6", "commonly used"),
        ("QWERTY123456", "commonly used"),
        ("my name is alice.smith ok", "email name"),
        ("i work at ACME OPS daily", "site name"),
        ("\ud800 lone surrogate here", "cannot be stored"),
    ],
)
def test_each_refusal_names_its_rule(password: object, words: str) -> None:
    problem = check_policy(password, **POLICY)  # type: ignore[arg-type]
    assert problem is not None and words in problem, problem


def test_no_composition_rules_and_short_names_are_not_checked() -> None:
    """LOGIN-6: no digits/symbols required; a 2-letter email name is not a rule."""
    assert check_policy("all lowercase words only", **POLICY) is None  # type: ignore[arg-type]
    assert (
        check_policy("bo likes long walks", email="bo@x.io", site_name="Keel", min_length=12)
        is None
    )


def test_the_common_list_is_the_embedded_twenty_thousand() -> None:
    words = common_passwords()
    assert len(words) > 19_000 and "password" in words and "123456" in words
    assert common_passwords() is words  # loaded once


async def test_hash_new_refuses_with_the_policy_message(fast_hasher: Hasher) -> None:
    with pytest.raises(Invalid) as err:
        await hash_new(fast_hasher, Policy(12, "Keel"), "keel keel keel", email="a@b.io")
    assert "site name" in err.value.problem and err.value.http_status == 400
    assert (await hash_new(fast_hasher, Policy(), "plain long phrase", email="a@b.io")).startswith(
        "$argon2id$"
    )


def test_generated_one_time_passwords_pass_the_policy_and_differ() -> None:
    seen = {generate() for _ in range(50)}
    assert len(seen) == 50
    assert all(check_policy(p, **POLICY) is None for p in seen)  # type: ignore[arg-type]


async def test_an_app_started_without_the_test_hook_hashes_at_production_cost(
    config: Any, aiohttp_client: Any
) -> None:
    """The cheap set the page tests use is reachable only through TEST_HASHER_COST."""
    from app.authority.passwords import PRODUCTION
    from app.authority.setup import HASHER, TEST_HASHER_COST
    from app.config import SETTINGS
    from app.web.app import build_app

    app = build_app(config)
    assert TEST_HASHER_COST not in app
    await aiohttp_client(app)  # runs the start-up contexts
    stored = await app[HASHER].hash("a perfectly fine passphrase")
    assert PRODUCTION.memory_cost == 65536 and PRODUCTION.time_cost == 3
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    # No setting an operator could write selects other parameters.
    assert not [s.name for s in SETTINGS if "argon" in s.name or "hash" in s.name]


async def test_the_test_hook_is_loud(
    config: Any, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from app.authority.setup import HASHER, TEST_HASHER_COST
    from app.web.app import build_app
    from tests.helpers import CHEAP_HASHING

    app = build_app(config)
    app[TEST_HASHER_COST] = CHEAP_HASHING
    await aiohttp_client(app)
    assert "m=1024,t=1,p=1" in await app[HASHER].hash("a perfectly fine passphrase")
    assert any("test parameters" in r.getMessage() for r in caplog.records)
