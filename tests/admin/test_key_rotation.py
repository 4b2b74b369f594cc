"""Secret-key rotation over real HTTP: everything signed before a rotation stays valid while the
old key is in the ring (`secret_keys`), the audit chain verifies across both keys with the real
`keel audit verify`, and once the old key is retired its tokens are refused and its audit rows
are reported as unverifiable, not as tampered."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from app import keyring
from app.config import Config
from app.web import metrics
from tests.helpers import SmtpServer, cheap_app, keel, keel_env
from tests.web.conftest import page_token


async def _server(aiohttp_client: Any, config: Config) -> TestClient:
    client: TestClient = await aiohttp_client(cheap_app(config))
    return client


def _browser(server: TestClient, cookies: dict[str, str]) -> TestClient:
    """A client of `server` holding cookies a browser kept from before the rotation."""
    server.session.cookie_jar.clear()
    server.session.cookie_jar.update_cookies(cookies)
    return server


def _verify(database_url: str, *ring: str) -> Any:
    env = keel_env(KEEL_DATABASE_URL=database_url, KEEL_SECRET_KEYS=",".join(ring))
    return keel("audit", "verify", env=env)


async def test_a_rotation_keeps_everything_signed_before_it_valid(
    signed_in: Any,
    make_user: Any,
    seeded: psycopg.AsyncConnection[Any],
    client: TestClient,
    config: Config,
    secret_key: str,
    database_url: str,
    aiohttp_client: Any,
    smtp: SmtpServer,
) -> None:
    conn = seeded
    old_key, new_key = secret_key, keyring.new_key()
    old_id, new_id = keyring.public_id(old_key), keyring.public_id(new_key)

    # ---- before the rotation: a server with one key hands out signed things -------------
    admin = await signed_in("administrator")
    form_token = page_token(await (await admin.get("/account/sessions")).text())
    cursor = (await (await admin.get("/admin/bookings/?format=json")).json())["next_cursor"]
    assert cursor
    cur = await conn.execute(
        "INSERT INTO technicians (name, email) VALUES ('Tess', 'tess@x.test') RETURNING id"
    )
    (tech,) = await cur.fetchone()  # type: ignore[misc]
    deleted = await admin.post(f"/admin/technicians/{tech}/delete", {})
    assert deleted.status == 303
    flash_cookie = deleted.cookies["keel_flash"].value
    # A reset link asked for now and mailed later: its mail waits sealed in the outbox (no SMTP).
    staff, _ = await make_user("staff")
    forgot = page_token(await (await client.get("/forgot")).text())
    resp = await client.post(
        "/forgot", data={"email": staff.email, "csrf_token": forgot}, allow_redirects=False
    )
    assert resp.status == 303
    session = {"keel_session": admin.cookie, "keel_flash": flash_cookie}

    # ---- the rotation: a new server process with the ring [new, old] --------------------
    port, recorder = smtp.port, smtp.handler
    rotated = config.with_values(
        secret_keys=(new_key, old_key),
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="none",
        mail_from="Keel <keel@example.com>",
    )
    assert rotated.secret_key == new_key, "the first key of the ring signs"
    b = _browser(await _server(aiohttp_client, rotated), session)
    page = await b.get("/admin/technicians/")
    assert page.status == 200, "the session from before the rotation is still signed in"
    assert f"Deleted technician {tech}." in await page.text(), "the flash set before it shows"
    more = await b.get("/admin/bookings/", params={"format": "json", "cursor": cursor})
    assert more.status == 200, await more.text()
    kept = await b.post(
        "/account/sessions",
        data={"action": "revoke_others", "csrf_token": form_token},
        allow_redirects=False,
    )
    assert kept.status == 303, "a form shown before the rotation still posts"
    for _ in range(100):  # the new server's mail worker sends the mail queued before
        if recorder.messages:
            break
        await asyncio.sleep(0.1)
    [mail] = recorder.messages
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"http://127\.0\.0\.1:8000(/reset/[A-Za-z0-9_-]{43})", text)
    assert link, text
    reset = await b.get(link.group(1))
    assert reset.status == 200 and "Choose a new password" in await reset.text()
    new_password = "a wholly different passphrase"
    done = await b.post(
        link.group(1),
        data={
            "password": new_password,
            "confirm": new_password,
            "csrf_token": page_token(await reset.text()),
        },
        allow_redirects=False,
    )
    assert done.status == 303, "the link mailed before the rotation sets the password"

    cur = await conn.execute("SELECT DISTINCT key_id FROM keel_audit WHERE key_id IS NOT NULL")
    assert {r[0] for r in await cur.fetchall()} == {old_id, new_id}, "rows signed by both keys"
    proc = _verify(database_url, new_key, old_key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit chain verifies" in proc.stdout and "cannot be verified" not in proc.stdout
    [(kid, advice)] = await keyring.retirement(conn, rotated)
    assert kid == old_id and advice.startswith("still needed until"), advice
    later = datetime.now(UTC) + timedelta(seconds=rotated.session_absolute + 60)
    [(_, advice)] = await keyring.retirement(conn, rotated, now=later)
    assert advice.startswith("nothing live depends on it; keep it for audit verification")
    # /metrics checks the chain with the whole ring too: on the rotated server, and on a host
    # that still signs with the old key and already verifies with the new one.
    for ring in ((new_key, old_key), (old_key, new_key)):
        metrics._Verified.ok = None  # checked at most once a minute: check now
        scraper = await _server(aiohttp_client, config.with_values(secret_keys=ring))
        text = await (await scraper.get("/metrics")).text()
        assert "\nkeel_audit_chain_ok 1\n" in text, text[-1500:]
    env = keel_env(KEEL_DATABASE_URL=database_url, KEEL_SECRET_KEYS=f"{new_key},{old_key}")
    doctor = keel("doctor", env=env).stdout
    assert re.search(r"✓ audit chain: the newest \d+ rows verify", doctor), doctor
    assert f"✓ key {old_id}: still needed until" in doctor, doctor

    # ---- the old key retired: its rows are unverifiable, its tokens refused -------------
    proc = _verify(database_url, new_key)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"cannot be verified: key {old_id} retired" in proc.stdout, proc.stdout
    assert "broken" not in proc.stdout
    retired = config.with_values(secret_keys=(new_key,))
    c = _browser(await _server(aiohttp_client, retired), session)
    page = await c.get("/admin/technicians/")
    assert page.status == 200 and f"Deleted technician {tech}." not in await page.text()
    stale = await c.get("/admin/bookings/", params={"format": "json", "cursor": cursor})
    assert stale.status == 400
    refused = await c.post(
        "/account/sessions",
        data={"action": "revoke_others", "csrf_token": form_token},
        allow_redirects=False,
    )
    assert refused.status == 403


async def test_renaming_or_altering_a_row_across_a_rotation_is_not_hidden(
    signed_in: Any,
    seeded: psycopg.AsyncConnection[Any],
    secret_key: str,
    database_url: str,
) -> None:
    """A row is checked with the key its id names, so an altered row of either key is broken;
    a row whose key left the ring is counted as unverifiable, never as verified."""
    conn = seeded
    await signed_in("administrator")
    new_key = keyring.new_key()
    assert _verify(database_url, new_key, secret_key).returncode == 0
    # Only a key that never signed anything: nothing is verified, and since the newest row
    # must name a key in the ring, the chain does not pass either.
    proc = _verify(database_url, new_key)
    assert proc.returncode == 1 and "newest row names a key" in proc.stdout, proc.stdout
    await conn.execute("ALTER TABLE keel_audit DISABLE TRIGGER keel_audit_no_update_delete")
    await conn.execute(
        "UPDATE keel_audit SET summary = 'edited' WHERE id = (SELECT min(id) FROM keel_audit)"
    )
    proc = _verify(database_url, new_key, secret_key)
    assert proc.returncode == 1 and "the row was altered" in proc.stdout, proc.stdout
    # Renaming the altered row's key to one that is not in the ring does not make it pass.
    await conn.execute(
        "UPDATE keel_audit SET key_id = 'deadbeef' WHERE id = (SELECT min(id) FROM keel_audit)"
    )
    # The row after it sealed the key id it had, so the relabelling itself is caught.
    proc = _verify(database_url, new_key, secret_key)
    assert proc.returncode == 1 and "key id of the row before it" in proc.stdout, proc.stdout
    assert "retired" not in proc.stdout


async def test_a_rotation_between_two_real_servers_keeps_what_the_first_signed(
    seeded: psycopg.AsyncConnection[Any], make_user: Any, database_url: str, secret_key: str
) -> None:
    """The acceptance run with real processes: `keel serve` with one key signs a session's
    form token, a list cursor and a flash; it stops; `keel serve` with the ring [new, old]
    takes over, in the middle of the same browser's visit, and accepts every one of them; the
    audit chain, written by both, verifies with the real `keel audit verify`."""
    import aiohttp

    from tests.helpers import wait_http
    from tests.web.test_workers import Server

    user, password = await make_user("administrator")
    new_key = keyring.new_key()
    jar = aiohttp.CookieJar(unsafe=True)
    first = Server(database_url, secret_key, workers=1)
    try:
        assert wait_http(first.url + "/healthz", timeout=60, proc=first.proc) == 200
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            base, origin = first.url, {"Origin": first.url}
            token = page_token(await (await s.get(base + "/login")).text())
            signed = await s.post(
                base + "/login",
                data={"email": user.email, "password": password, "csrf_token": token},
                headers=origin,
                allow_redirects=False,
            )
            assert signed.status == 303
            form_token = page_token(await (await s.get(base + "/account/sessions")).text())
            listing = await (await s.get(base + "/admin/bookings/?format=json")).json()
            cursor = listing["next_cursor"]
            assert cursor
            # A flash set now and shown only after the rotation (the redirect is not followed).
            ended = await s.post(
                base + "/account/sessions",
                data={"action": "revoke_others", "csrf_token": form_token},
                headers=origin,
                allow_redirects=False,
            )
            assert ended.status == 303
    finally:
        first.stop()

    second = Server(database_url, f"{new_key},{secret_key}", workers=1)
    try:
        assert wait_http(second.url + "/healthz", timeout=60, proc=second.proc) == 200
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            base, origin = second.url, {"Origin": second.url}
            page = await s.get(base + "/account/sessions", allow_redirects=False)
            text = await page.text()
            assert page.status == 200, "the session from before the rotation is signed in"
            assert "Your other sessions were ended." in text, "the flash set before it shows"
            more = await s.get(
                base + "/admin/bookings/", params={"format": "json", "cursor": cursor}
            )
            assert more.status == 200, await more.text()
            assert (await more.json())["rows"]
            kept = await s.post(
                base + "/account/sessions",
                data={"action": "revoke_others", "csrf_token": form_token},
                headers=origin,
                allow_redirects=False,
            )
            assert kept.status == 303, "a form shown before the rotation still posts"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            token = page_token(await (await s.get(second.url + "/login")).text())
            again = await s.post(
                second.url + "/login",
                data={"email": user.email, "password": password, "csrf_token": token},
                headers={"Origin": second.url},
                allow_redirects=False,
            )
            assert again.status == 303  # an audit row sealed with the new key
    finally:
        log = second.stop()
    assert "Traceback" not in log
    cur = await seeded.execute("SELECT DISTINCT key_id FROM keel_audit WHERE key_id IS NOT NULL")
    ids = {r[0] for r in await cur.fetchall()}
    assert {keyring.public_id(secret_key), keyring.public_id(new_key)} <= ids
    proc = _verify(database_url, new_key, secret_key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit chain verifies" in proc.stdout and "cannot be verified" not in proc.stdout


async def test_doctor_says_when_the_new_key_has_signed_nothing_yet(
    make_user: Any, database_url: str, secret_key: str
) -> None:
    """The first step of a rotation on one host, before any process runs with the new ring:
    the old key is still needed, and doctor says what to do."""
    await make_user("staff")  # an audit row sealed with the old key
    new_key = keyring.new_key()
    env = keel_env(KEEL_DATABASE_URL=database_url, KEEL_SECRET_KEYS=f"{new_key},{secret_key}")
    doctor = keel("doctor", env=env).stdout
    old_id, new_id = keyring.public_id(secret_key), keyring.public_id(new_key)
    assert f"key {old_id}: still needed: the signing key {new_id} has signed nothing yet" in (
        doctor
    ), doctor
    assert "restart every keel process with the new ring" in doctor
