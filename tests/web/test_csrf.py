"""CSRF: session-bound tokens, the pre-session cookie, Origin and Fetch Metadata (SEC-1)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.helpers import cheap_app
from tests.web.conftest import login_form


async def _refused(resp) -> None:  # type: ignore[no-untyped-def]
    """403 inside the page chrome, with the request id kept (SEC-1)."""
    assert resp.status == 403
    body = await resp.text()
    assert "could not be accepted" in body
    assert resp.headers["X-Request-ID"] in body


async def test_a_form_without_or_with_a_wrong_token_is_refused(client, make_user) -> None:
    user, password = await make_user("staff")
    await login_form(client)  # the pre-session cookie exists; the token is simply missing
    form = {"email": user.email, "password": password}
    await _refused(await client.post("/login", data=form))
    await _refused(await client.post("/login", data={**form, "csrf_token": "0" * 64}))
    await _refused(await client.post("/login", data={**form, "csrf_token": "<script>"}))
    await _refused(await client.post("/login", json={**form}))


async def test_a_token_only_works_with_its_own_cookie(client, make_user) -> None:
    """A token copied from another browser is useless without that browser's cookie."""
    user, password = await make_user("staff")
    token = await login_form(client)
    stranger = TestClient(client.server)
    await login_form(stranger)
    form = {"email": user.email, "password": password, "csrf_token": token}
    await _refused(await stranger.post("/login", data=form))
    await stranger.session.close()
    ok = await client.post("/login", data=form, allow_redirects=False)
    assert ok.status == 303


async def test_signed_in_forms_need_the_session_token(signed_in) -> None:
    s = await signed_in("staff")
    await _refused(await s.client.post("/account/sessions", data={"action": "revoke_others"}))
    await _refused(await s.client.post("/logout"))
    assert (await s.post("/account/sessions", {"action": "revoke_others"})).status == 303
    # The header form is accepted too, for the small script (keel.js).
    resp = await s.client.post(
        "/account/sessions",
        data={"action": "revoke_others"},
        headers={"X-CSRF-Token": s.csrf},
        allow_redirects=False,
    )
    assert resp.status == 303


async def test_a_token_from_before_sign_in_does_not_authorise_signed_in_changes(client, make_user):
    """SEC-1: once signed in, a change needs this session's token; the login form's
    (bound to the pre-session cookie the browser still has) is refused."""
    user, password = await make_user("staff")
    pre_token = await login_form(client)
    form = {"email": user.email, "password": password, "csrf_token": pre_token}
    assert (await client.post("/login", data=form, allow_redirects=False)).status == 303
    stale = {"action": "revoke_others", "csrf_token": pre_token}
    await _refused(await client.post("/account/sessions", data=stale))
    await _refused(await client.post("/logout", data={"csrf_token": pre_token}))


async def test_after_sign_out_the_old_token_is_dead(signed_in) -> None:
    s = await signed_in("staff")
    old = s.csrf
    assert (await s.post("/logout")).status == 303
    resp = await s.client.post(
        "/account/sessions", data={"action": "revoke_others", "csrf_token": old}
    )
    assert resp.status == 403


async def test_cross_site_requests_are_refused_even_with_a_valid_token(signed_in) -> None:
    """SEC-1: Sec-Fetch-Site cross-site and a foreign or opaque Origin are refused."""
    s = await signed_in("staff")
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example.com"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://127.0.0.1:8000.evil.example.com"},
    ):
        await _refused(
            await s.post("/account/sessions", {"action": "revoke_others"}, headers=headers)
        )
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"},
        {"Origin": "HTTP://127.0.0.1:8000"},
        {"Sec-Fetch-Site": "none"},
        # What browsers send for our own forms under `Referrer-Policy: no-referrer`.
        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
    ):
        resp = await s.post("/account/sessions", {"action": "revoke_others"}, headers=headers)
        assert resp.status == 303, headers


async def test_without_public_url_the_origin_must_be_the_requests_own_host(
    config, aiohttp_client
) -> None:
    client = await aiohttp_client(cheap_app(config.with_values(public_url="")))
    token = await login_form(client)
    own = f"http://{client.host}:{client.port}"
    form = {"email": "nobody@example.com", "password": "x", "csrf_token": token}
    resp = await client.post("/login", data=form, headers={"Origin": own})
    assert resp.status == 401
    await _refused(
        await client.post("/login", data=form, headers={"Origin": "http://127.0.0.1:8000"})
    )


async def test_unsafe_requests_to_unknown_routes_are_just_404_or_405(client) -> None:
    assert (await client.post("/no-such-page")).status == 404
    assert (await client.delete("/login")).status == 405


def test_kept_tokens_equal_computed_ones_and_the_memo_stays_bounded() -> None:
    from app.web import csrf

    key = csrf.derive_key("k" * 40)
    first = csrf._mac(key, b"s:", "cookie-1")
    assert csrf._mac(key, b"s:", "cookie-1") == first  # kept
    csrf._MACS.clear()
    assert csrf._mac(key, b"s:", "cookie-1") == first  # computed again: the same
    assert csrf._mac(key, b"p:", "cookie-1") != first  # the kind is part of the key
    assert csrf._mac(csrf.derive_key("j" * 40), b"s:", "cookie-1") != first
    for i in range(csrf.MAC_MEMO_SIZE + 50):
        csrf._mac(key, b"s:", f"c{i}")
    assert len(csrf._MACS) <= csrf.MAC_MEMO_SIZE


def test_form_token_pads_are_never_reused_not_even_by_a_forked_worker() -> None:
    import os

    from app.web.csrf import _Pads

    pads = [_Pads.take() for _ in range(600)]  # more than one read from the kernel
    assert len(set(pads)) == 600 and all(len(p) == 16 for p in pads)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a worker after the supervisor's fork
        os.write(write, _Pads.take())
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.waitpid(pid, 0)
    assert child != _Pads.take()  # without the at-fork reset, both would take the same pad
