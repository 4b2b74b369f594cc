"""Public pages, health endpoints, security headers and request ids (OPS-2, SEC-2, AUDIT-6)."""

from __future__ import annotations

import re

import psycopg
import pytest

from app.web.middleware import CSP, mask_path

SEC_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Robots-Tag": "noindex",
}
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def assert_security_headers(resp: object) -> None:
    headers = resp.headers  # type: ignore[attr-defined]
    for name, value in SEC_HEADERS.items():
        assert headers.get(name) == value, name
    assert "camera=()" in headers["Permissions-Policy"]
    assert UUID7.match(headers["X-Request-ID"]) or len(headers["X-Request-ID"]) >= 16


async def test_status_page_is_public_and_names_the_version(client: object) -> None:
    resp = await client.get("/")  # type: ignore[attr-defined]
    assert resp.status == 200
    body = await resp.text()
    assert "Keel" in body and "0.1.0" in body and "/login" in body
    assert_security_headers(resp)
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in resp.headers, "no HSTS over plain HTTP"
    assert "<script>" not in body and " style=" not in body


async def test_healthz_and_readyz(client: object) -> None:
    resp = await client.get("/healthz")  # type: ignore[attr-defined]
    assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
    ready = await client.get("/readyz")  # type: ignore[attr-defined]
    data = await ready.json()
    assert ready.status == 200, data
    assert data["status"] == "ready" and data["database"] == "ok" and data["pending"] == 0
    assert data["schema"].startswith("core:")
    assert "postgresql://" not in await ready.text()


async def test_readyz_is_503_when_a_migration_is_pending(client: object, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM keel_migrations WHERE version = 'core:0001'")
    ready = await client.get("/readyz")  # type: ignore[attr-defined]
    assert ready.status == 503
    data = await ready.json()
    assert data["pending"] == 1 and data["status"] == "unavailable"
    assert_security_headers(ready)


async def test_readyz_stays_ready_with_migrations_from_a_newer_build(
    client: object, database_url: str
) -> None:
    """A rolling upgrade or rollback: the schema is ahead of this build; it still serves."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO keel_migrations (version, name, checksum, applied_by) VALUES ('core:9999', 'future', 'x', 't')"
        )
    ready = await client.get("/readyz")  # type: ignore[attr-defined]
    assert ready.status == 200


async def test_request_id_kept_when_well_formed_else_minted(client: object) -> None:
    good = "abcdefghijklmnop-_1234"
    resp = await client.get("/healthz", headers={"X-Request-ID": good})  # type: ignore[attr-defined]
    assert resp.headers["X-Request-ID"] == good
    resp = await client.get("/healthz", headers={"X-Correlation-ID": "corr-id-0123456789"})  # type: ignore[attr-defined]
    assert resp.headers["X-Request-ID"] == "corr-id-0123456789"
    for bad in ["short", "x" * 65, "has space in it....", "<script>alert(1)</script>"]:
        resp = await client.get("/healthz", headers={"X-Request-ID": bad})  # type: ignore[attr-defined]
        assert UUID7.match(resp.headers["X-Request-ID"]), bad


async def test_404_page_has_request_id_and_headers(client: object) -> None:
    resp = await client.get("/no/such/page", headers={"X-Request-ID": "req-0123456789abcdef"})  # type: ignore[attr-defined]
    assert resp.status == 404
    body = await resp.text()
    assert "req-0123456789abcdef" in body
    assert_security_headers(resp)


async def test_wrong_method_is_405_page(client: object) -> None:
    resp = await client.post("/healthz")  # type: ignore[attr-defined]
    assert resp.status == 405
    assert_security_headers(resp)


async def test_static_stylesheet_is_served_with_immutable_cache(client: object) -> None:
    page = await (await client.get("/")).text()  # type: ignore[attr-defined]
    m = re.search(r'href="(/static/keel\.css\?v=[0-9a-f]+)"', page)
    assert m, "the base template links the one stylesheet with a content hash"
    css = await client.get(m.group(1))  # type: ignore[attr-defined]
    assert css.status == 200 and css.content_type == "text/css"
    assert "immutable" in css.headers["Cache-Control"]
    assert "--keel-" in await css.text()
    etag = css.headers["ETag"]
    again = await client.get(m.group(1), headers={"If-None-Match": etag})  # type: ignore[attr-defined]
    assert again.status == 304
    missing = await client.get("/static/../app/config.py")  # type: ignore[attr-defined]
    assert missing.status == 404


async def test_oversized_body_is_413_not_500(client: object) -> None:
    resp = await client.post("/", data=b"x" * (2 << 20))  # type: ignore[attr-defined]
    assert resp.status in (405, 413)


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/reset/abcDEF123", "/reset/***"),
        ("/reset/abc/def", "/reset/***/def"),
        ("/login", "/login"),
    ],
)
def test_secret_path_segments_are_masked_in_logs(path: str, shown: str) -> None:
    assert mask_path(path) == shown


def test_content_security_policy_is_exactly_the_specified_one() -> None:
    """SEC-2's policy plus connect-src 'self' (docs/decisions.md); no unsafe-inline anywhere."""
    assert CSP == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
