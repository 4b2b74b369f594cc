"""Recovery pages end to end, with mail delivered to a real SMTP server (REC-1..3, REC-6, MAIL-1)."""

from __future__ import annotations

import asyncio
import logging
import re

import psycopg

from tests.helpers import cheap_app, outbox_mail
from tests.web.conftest import page_token, sign_in

NEW = "a wholly different passphrase"


async def _forgot(client, email: str, headers: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    token = page_token(await (await client.get("/forgot")).text())
    resp = await client.post(
        "/forgot",
        data={"email": email, "csrf_token": token},
        headers=headers or {},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/forgot/sent"


async def _link_from_outbox(database_url: str, secret_key: str) -> str:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        *_, (_, body) = await outbox_mail(conn, secret_key)
    m = re.search(r"http://127\.0\.0\.1:8000(/reset/[A-Za-z0-9_-]{43})", body)
    assert m, body
    return m.group(1)


async def test_reset_mail_arrives_over_smtp_with_a_public_url_link(
    config, aiohttp_client, make_user, smtp
) -> None:
    """REC-1: the link comes from public_url, never from the Host header; MAIL-1: delivered."""
    port, recorder = smtp.port, smtp.handler
    app = cheap_app(
        config.with_values(
            public_url="https://ops.example.com",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_tls="none",
            mail_from="Keel <keel@example.com>",
        )
    )
    client = await aiohttp_client(app)
    user, _ = await make_user("staff")
    await _forgot(client, user.email, headers={"Host": "evil.example.com"})
    for _ in range(100):
        if recorder.messages:
            break
        await asyncio.sleep(0.1)
    [msg] = recorder.messages
    assert msg["To"] == user.email
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://ops.example.com/reset/" in text and "evil.example.com" not in text
    assert "127.0.0.1" in text  # MAIL-3: from which address it was asked


async def test_reset_link_sets_the_password_once_and_signs_nobody_in(
    client, signed_in, database_url, secret_key
) -> None:
    """REC-2: form → policy → consume → every session ends → login with a notice."""
    s = await signed_in("staff")
    await _forgot(client, s.user.email)
    path = await _link_from_outbox(database_url, secret_key)
    page = await client.get(path)
    assert page.status == 200 and "Choose a new password" in await page.text()
    token = page_token(await page.text())
    short = await client.post(
        path, data={"password": "short", "confirm": "short", "csrf_token": token}
    )
    assert short.status == 400 and "Too short" in await short.text()
    differ = await client.post(
        path, data={"password": NEW, "confirm": NEW + "!", "csrf_token": token}
    )
    assert differ.status == 400 and "do not match" in await differ.text()
    done = await client.post(
        path, data={"password": NEW, "confirm": NEW, "csrf_token": token}, allow_redirects=False
    )
    assert done.status == 303 and done.headers["Location"] == "/login"  # the notice: a flash
    assert "Sign in with the new one" in await (await client.get(done.headers["Location"])).text()
    assert "keel_session" not in done.cookies, "a reset never signs anyone in"
    assert (await s.get("/account")).status == 303, "the old session ended"
    again = await client.post(path, data={"password": NEW, "confirm": NEW, "csrf_token": token})
    assert again.status == 410
    assert (await sign_in(client, s.user.email, NEW)).status == 303


async def test_bad_expired_and_used_links_all_show_one_page(
    client, make_user, database_url, secret_key
) -> None:
    """REC-2: invalid, expired and used links are indistinguishable."""
    user, _ = await make_user("staff")
    await _forgot(client, user.email)
    expired = await _link_from_outbox(database_url, secret_key)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("UPDATE keel_recovery_tokens SET expires_at = now() - interval '1 s'")
    pages = set()
    for path in (expired, "/reset/" + "A" * 43, "/reset/short", "/reset/%3Cscript%3E"):
        resp = await client.get(path)
        body = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "…", await resp.text())
        pages.add((resp.status, re.sub(r'value="[0-9a-f]{64}"', "", body)))
    assert len(pages) == 1 and pages.pop()[0] == 410


async def test_reset_tokens_never_reach_the_access_log(
    client, make_user, database_url, caplog, secret_key
) -> None:
    """REC-6: the token segment of reset paths is masked; query strings are never logged."""
    user, _ = await make_user("staff")
    await _forgot(client, user.email)
    path = await _link_from_outbox(database_url, secret_key)
    secret = path.rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO, logger="keel.access"):
        await client.get(path + "?x=" + secret)
    lines = [r.getMessage() + str(r.__dict__) for r in caplog.records]
    assert any("/reset/***" in line for line in lines)
    assert not any(secret in line for line in lines)
