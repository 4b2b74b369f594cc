"""Issue 3 acceptance: no secret at rest, uniform answers, throttles, hostile input (INV-1/2, SEC-3)."""

from __future__ import annotations

import re
import statistics
import time

import psycopg
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from psycopg import sql

from tests.helpers import outbox_mail
from tests.web.conftest import login_form, page_token, sign_in

_VOLATILE = (
    re.compile(r'name="csrf_token" value="[0-9a-f]{64}"'),
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"),  # request id
)


def _stable(html: str) -> str:
    for pattern in _VOLATILE:
        html = pattern.sub("…", html)
    return html


async def _post_login(client: TestClient, email: str, password: str) -> tuple[int, str]:
    """Status and page; the address the person typed, which the form shows again, is
    replaced by a placeholder so pages for different addresses compare."""
    token = await login_form(client)
    resp = await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    page = await resp.text()
    if resp.status == 401:
        assert f'name="email" type="email" value="{email}"' in page, "the form keeps the email"
    return resp.status, page.replace(f'value="{email}"', 'value="(typed)"')


async def test_every_login_failure_is_byte_identical(client, make_user, database_url) -> None:
    """LOGIN-1, INV-2: unknown email, wrong password, inactive and locked look the same."""
    known, _ = await make_user("staff")
    inactive, inactive_pw = await make_user("staff", active=False)
    locked, locked_pw = await make_user("staff")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE keel_users SET locked_until = now() + interval '1 hour' WHERE id = %s",
            (locked.id,),
        )
    answers = [
        await _post_login(client, "nobody@example.com", "some password 1"),
        await _post_login(client, known.email, "some password 1"),
        await _post_login(client, inactive.email, inactive_pw),
        await _post_login(client, locked.email, locked_pw),
    ]
    assert {status for status, _ in answers} == {401}
    pages = {_stable(body) for _, body in answers}
    assert len(pages) == 1
    page = pages.pop()
    assert "The email or password is not right" in page
    for user in (known, inactive, locked):
        assert user.email not in page
    # The cursor waits in the password field, the address already filled in.
    assert re.search(r'name="password" type="password"[^>]*autofocus', page)
    assert not re.search(r'name="email" [^>]*autofocus', page)


async def test_unknown_email_costs_about_as_much_as_a_known_one(
    config, aiohttp_client, make_user, database_url
) -> None:
    """LOGIN-1: an unknown email verifies a dummy hash; medians within 2x of each other.

    About hashing cost, so at production cost: an app without the test hook, and a stored hash
    made by that app's hasher."""
    from app.authority import users
    from app.authority.setup import HASHER
    from app.web.app import build_app

    app = build_app(config)
    client = await aiohttp_client(app)
    known, _ = await make_user("staff")
    real_hash = await app[HASHER].hash("a passphrase made at full cost")
    assert real_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await users.write_password(conn, known.id, real_hash, must_change=False)
    await _post_login(client, "warm-up@example.com", "x")  # the dummy hash is made once

    async def once(email: str) -> float:
        token = await login_form(client)
        started = time.perf_counter()
        resp = await client.post(
            "/login", data={"email": email, "password": "not it 123", "csrf_token": token}
        )
        assert resp.status == 401
        return time.perf_counter() - started

    unknown, known_times = [], []
    for _ in range(5):  # interleaved, so a busy moment on the machine hits both alike
        unknown.append(await once("nobody@example.com"))
        known_times.append(await once(known.email))
    unknown_t, known_t = statistics.median(unknown), statistics.median(known_times)
    assert unknown_t < 2 * known_t and known_t < 2 * unknown_t, (unknown_t, known_t)


async def test_forgot_takes_as_long_for_an_unknown_address_as_for_a_known_one(
    client, make_user
) -> None:
    """REC-1: no timing oracle: the answer waits for one floor whatever the address did."""
    from app.web.account import FORGOT_FLOOR

    known, _ = await make_user("staff")

    async def once(email: str) -> float:
        token = page_token(await (await client.get("/forgot")).text())
        started = time.perf_counter()
        resp = await client.post(
            "/forgot", data={"email": email, "csrf_token": token}, allow_redirects=False
        )
        assert resp.status == 303
        return time.perf_counter() - started

    unknown, known_times = [], []
    for i in range(3):
        unknown.append(await once(f"nobody{i}@example.com"))
        known_times.append(await once(known.email))  # the 4th+ would be rate-limited: 3 tries
    unknown_t, known_t = statistics.median(unknown), statistics.median(known_times)
    assert min(unknown + known_times) >= FORGOT_FLOOR
    assert abs(unknown_t - known_t) < 0.25 * FORGOT_FLOOR, (unknown_t, known_t)


async def test_forgot_answers_the_same_for_every_outcome(client, make_user, database_url) -> None:
    """REC-1, INV-2: unknown, inactive, rate-limited and success give the same redirect and page."""
    known, _ = await make_user("staff")
    inactive, _ = await make_user("staff", active=False)
    limited, _ = await make_user("staff")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO keel_rate_events (bucket, key) SELECT 'reset_request_user', %s"
            " FROM generate_series(1, 3)",
            (str(limited.id),),
        )
    answers = []
    for email in ("nobody@example.com", inactive.email, limited.email, known.email):
        token = page_token(await (await client.get("/forgot")).text())
        resp = await client.post(
            "/forgot", data={"email": email, "csrf_token": token}, allow_redirects=False
        )
        page = await (await client.get(resp.headers["Location"])).text()
        answers.append((resp.status, resp.headers["Location"], _stable(page)))
    assert len(set(answers)) == 1 and answers[0][:2] == (303, "/forgot/sent")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT to_addr FROM keel_outbox")
        assert await cur.fetchall() == [(known.email,)]


async def test_the_per_ip_limit_answers_429_with_retry_after(client, database_url) -> None:
    """LOGIN-3: counted in Postgres, keyed by the client address."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO keel_rate_events (bucket, key) SELECT 'login_ip', '127.0.0.1'"
            " FROM generate_series(1, 30)"
        )
    status, body = await _post_login(client, "nobody@example.com", "x")
    assert status == 429 and "Too many sign-in attempts" in body
    token = await login_form(client)
    resp = await client.post(
        "/login", data={"email": "a@example.com", "password": "x", "csrf_token": token}
    )
    assert 1 <= int(resp.headers["Retry-After"]) <= 60


async def _all_stored_text(database_url: str) -> str:
    """Every text, bytea and json value of every table, as one searchable string."""
    out: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN"
            " ('text', 'bytea', 'character varying', 'jsonb', 'json', 'ARRAY')"
        )
        for table, column, kind in await cur.fetchall():
            query = sql.SQL("SELECT {}::text FROM {}").format(
                sql.Identifier(column), sql.Identifier(table)
            )
            rows = await (await conn.execute(query)).fetchall()
            for (value,) in rows:
                if value is None:
                    continue
                out.append(value)
                if kind == "bytea":  # also the raw bytes, decoded
                    out.append(bytes.fromhex(value[2:]).decode("latin-1"))
    return "\n".join(out)


async def test_no_plaintext_secret_is_stored_anywhere(
    client, make_user, database_url, config
) -> None:
    """INV-1: after sign-ins, a reset and a re-auth, no cookie value or reset token is found
    in any column of any table, and every password is an Argon2id hash."""
    user, password = await make_user("administrator")
    secrets_seen: list[str] = []
    resp = await sign_in(client, user.email, password)
    secrets_seen.append(resp.cookies["keel_session"].value)
    page = await (await client.get("/reauth?return_to=/account")).text()
    resp = await client.post(
        "/reauth",
        data={"password": password, "return_to": "/account", "csrf_token": page_token(page)},
        allow_redirects=False,
    )
    secrets_seen.append(resp.cookies["keel_session"].value)
    other = TestClient(client.server)
    token = page_token(await (await other.get("/forgot")).text())
    secrets_seen += [
        token,
        other.session.cookie_jar.filter_cookies(other.make_url("/"))["keel_csrf"].value,
    ]
    await other.post("/forgot", data={"email": user.email, "csrf_token": token})
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        [(_, body)] = await outbox_mail(conn, config.secret_key)  # as the worker will send it
    reset = re.search(r"/reset/([A-Za-z0-9_-]{43})", body).group(1)  # type: ignore[union-attr]
    secrets_seen.append(reset)
    # While the link is live, neither the outbox nor any other table holds its token.
    assert reset not in await _all_stored_text(database_url)
    form = page_token(await (await other.get(f"/reset/{reset}")).text())
    new = "an entirely new passphrase"
    done = await other.post(
        f"/reset/{reset}",
        data={"password": new, "confirm": new, "csrf_token": form},
        allow_redirects=False,
    )
    assert done.status == 303
    resp = await sign_in(other, user.email, new)
    secrets_seen.append(resp.cookies["keel_session"].value)
    await other.session.close()
    stored = await _all_stored_text(database_url)
    for secret in secrets_seen:
        assert len(secret) >= 40 and secret not in stored
    for pw in (password, new):
        assert pw not in stored
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT password_hash FROM keel_users")
        assert all(h.startswith("$argon2id$") for (h,) in await cur.fetchall())


# ---- hostile and malformed input: 400/413 with a message, never 500 (SEC-3) ----------------

HOSTILE = [
    "'; DROP TABLE keel_users; --",
    "<script>alert(1)</script>",
    "\x00\x01\x02",
    "line\r\nbreak",
    "x" * 5000,
]
FORMS = {
    "/login": ("email", "password", "return_to"),
    "/forgot": ("email",),
    "/reset/" + "A" * 43: ("password", "confirm"),
}


@pytest.mark.parametrize("path", sorted(FORMS))
async def test_public_forms_survive_hostile_values(client, path: str) -> None:
    for field in FORMS[path]:
        for value in HOSTILE:
            token = await login_form(client)
            data = {name: "ordinary@example.com" for name in FORMS[path]}
            data[field] = value
            resp = await client.post(
                path, data={**data, "csrf_token": token}, allow_redirects=False
            )
            assert resp.status in (303, 400, 401, 410), (field, value[:20], resp.status)
            assert "<script>alert(1)</script>" not in await resp.text()


@pytest.mark.parametrize("path", ["/login", "/forgot", "/reset/" + "A" * 43])
async def test_public_forms_refuse_missing_wrongly_typed_and_huge_bodies(client, path: str) -> None:
    token = await login_form(client)
    missing = await client.post(path, data={"csrf_token": token}, allow_redirects=False)
    text = await missing.text()
    assert (missing.status == 400 and "Enter your email address." in text) or (
        missing.status == 410 and "no longer works" in text
    ), (missing.status, text[:200])
    broken = await client.post(
        path,
        data=b"csrf_token=" + token.encode() + b"&email=%FF%FE&password=%FF",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert broken.status in (303, 400, 401, 410), broken.status
    upload = FormData()
    upload.add_field("csrf_token", token)
    upload.add_field("email", b"a@example.com", filename="x.txt")
    upload.add_field("password", b"secret", filename="y.txt")
    typed = await client.post(path, data=upload, allow_redirects=False)
    assert typed.status in (400, 410)
    huge = await client.post(
        path, data={"csrf_token": token, "email": "x" * (10 * 1024 * 1024)}, allow_redirects=False
    )
    assert huge.status == 413 and "too large" in (await huge.text()).lower()
    wrong_type = await client.post(
        path, data=b'{"email": 1}', headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status == 403  # no form, so no token: refused before anything else


async def test_signed_in_forms_survive_hostile_values(signed_in) -> None:
    s = await signed_in("staff")
    forms: dict[str, tuple[str, ...]] = {
        "/account/password": ("old_password", "new_password", "confirm"),
        "/account/sessions": ("action", "session_id"),
        "/reauth": ("password", "return_to"),
    }
    for path, fields in forms.items():
        for field in fields:
            for value in HOSTILE:
                resp = await s.post(path, {field: value})
                assert resp.status in (303, 400, 401), (path, field, value[:20], resp.status)
                assert "Traceback" not in await resp.text()
        huge = await s.post(path, {"x": "y" * (10 * 1024 * 1024)})
        assert huge.status == 413
    assert (await s.get("/account")).status == 200, "still signed in: nothing was changed"
    held = await signed_in("staff", must_change=True)
    for field in ("new_password", "confirm"):
        for value in HOSTILE:
            resp = await held.post("/must-change-password", {field: value})
            assert resp.status == 400, (field, value[:20], resp.status)
    assert (await held.post("/must-change-password", {"x": "y" * (10 * 1024 * 1024)})).status == 413
    assert (await held.get("/account")).headers["Location"] == "/must-change-password"
