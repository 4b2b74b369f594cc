"""A multipart body with a control character in a part header is a 400, never a 500 (SEC-3).

The bytes go over a raw socket: a well-behaved client library would refuse to send them.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient

pytestmark = pytest.mark.asyncio
BAD_BYTES = [b"\x00", b"\x01", b"\r"]


async def raw_post(client: TestClient, path: str, bad: bytes, cookie: str = "") -> bytes:
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="csrf_token' + bad + b'"\r\n\r\n'
        b"v\r\n--XX--\r\n"
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary=XX\r\nContent-Length: {len(body)}\r\n"
        + (f"Cookie: keel_session={cookie}\r\n" if cookie else "")
        + "\r\n"
    )
    assert client.server.host is not None and client.server.port is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head.encode() + body)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def assert_400_page(answer: bytes) -> None:
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request", answer[:500]
    assert b"X-Request-ID" in rest and b"could not be read" in rest


@pytest.mark.parametrize("bad", BAD_BYTES)
async def test_login_answers_400_without_a_traceback(client, caplog, bad):
    with caplog.at_level(logging.INFO):
        assert_400_page(await raw_post(client, "/login", bad))
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# A form post, and the import, which reads its upload as a stream rather than through the
# form reader: the same 400.
@pytest.mark.parametrize("path", ["/admin/groups/new", "/admin/bookings/import"])
@pytest.mark.parametrize("bad", BAD_BYTES)
async def test_admin_post_answers_400_without_a_traceback(signed_in, client, caplog, bad, path):
    admin = await signed_in("administrator")
    with caplog.at_level(logging.INFO):
        assert_400_page(await raw_post(client, path, bad, admin.cookie))
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
