"""OPS-3: every access line of a signed-in request names the user by id, never by email.

A real `keel serve` under systemd's environment writes JSON lines; the test reads them.
"""

from __future__ import annotations

import json
import signal

import aiohttp
import pytest

from tests.helpers import form_sign_in, free_port, keel_env, spawn_keel, wait_http

pytestmark = pytest.mark.asyncio


async def test_access_lines_of_signed_in_requests_carry_user_and_request_id(
    make_user, database_url, secret_key
):
    user, password = await make_user("administrator")
    port = free_port()
    env = keel_env(
        DATABASE_URL=database_url,
        KEEL_SECRET_KEY=secret_key,
        KEEL_LISTEN=f"127.0.0.1:{port}",
        INVOCATION_ID="test-invocation",  # JSON lines, as under systemd
    )
    proc = spawn_keel("serve", env=env)
    base = f"http://127.0.0.1:{port}"
    seen: dict[str, str] = {}  # request id → path, of the signed-in requests
    try:
        wait_http(base + "/healthz", proc=proc)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
            await form_sign_in(http, user.email, password)
            for path in ("/admin/", "/account", "/admin/no-such-page/"):
                resp = await http.get(path, allow_redirects=False)
                seen[resp.headers["X-Request-ID"]] = path
            anonymous = await aiohttp.ClientSession(base).__aenter__()
            resp = await anonymous.get("/login")
            anonymous_rid = resp.headers["X-Request-ID"]
            await anonymous.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    access = {x["request_id"]: x for x in lines if x.get("logger") == "keel.access"}
    for rid, path in seen.items():
        assert access[rid]["path"] == path
        assert access[rid]["user_id"] == user.id, access[rid]
    assert "user_id" not in access[anonymous_rid]
    assert user.email not in out + err, "the log names users by id only"
