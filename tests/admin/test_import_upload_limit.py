"""A 100 MB upload to the import page is refused with a clear error, without a memory spike
(EDIT-10): a real `keel serve` process, its resident memory read from /proc before and after.

Two ways a client sends it: with a Content-Length (refused before the body is read) and chunked
(no length: refused as soon as the streamed bytes pass import_max_size, 20 MiB by default).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import CSRF_FIELD, form_sign_in, free_port, keel_env, spawn_keel, wait_http

MB = 1 << 20
SIZE = 100 * MB
BOUNDARY = "keelboundary42"


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in bytes, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


async def send_upload(port: int, cookie: str, token: str, *, chunked: bool) -> bytes:
    """POSTs a multipart form whose file is SIZE bytes of CSV, over a raw socket; returns the
    response. Writing stops when the server closes the connection."""
    head_part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\nname,email,city\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    row = b"Somebody,somebody@example.org,Oslo\r\n"
    block = row * (64 * 1024 // len(row))
    blocks = SIZE // len(block)
    length = len(head_part) + blocks * len(block) + len(tail)
    headers = (
        f"POST /admin/customers/import HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nCookie: keel_session={cookie}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n")
        + "Connection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    def frame(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data

    async def write_all() -> None:
        try:
            writer.write(headers + frame(head_part))
            for _ in range(blocks):
                writer.write(frame(block))
                await writer.drain()
            writer.write(frame(tail) + (b"0\r\n\r\n" if chunked else b""))
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server answered and closed: the rest was never wanted

    sending = asyncio.create_task(write_all())
    answer = await asyncio.wait_for(reader.read(), 120)
    await asyncio.wait_for(sending, 120)
    writer.close()
    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_100_mb_upload_is_refused_without_a_memory_spike(
    make_user, database_url, secret_key, tmp_path, chunked
):
    user, password = await make_user("administrator")
    port = free_port()
    env = keel_env(
        DATABASE_URL=database_url,
        KEEL_SECRET_KEY=secret_key,
        KEEL_LISTEN=f"127.0.0.1:{port}",
        TMPDIR=str(tmp_path),
    )
    proc = spawn_keel("serve", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc=proc)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
            await form_sign_in(http, user.email, password)
            page = await (await http.get("/admin/customers/import")).text()
            assert "at most 20 MiB" in page
            token = CSRF_FIELD.search(page).group(1)
            cookie = next(m.value for m in jar if m.key == "keel_session")
            # Warm up the same code path with a small file, so what is measured is the upload.
            small = aiohttp.FormData()
            small.add_field("csrf_token", token)
            small.add_field("file", b"name\nx\n", filename="s.csv", content_type="text/csv")
            resp = await http.post("/admin/customers/import", data=small, allow_redirects=False)
            assert resp.status == 303
        before = memory(proc.pid)
        answer = await send_upload(port, cookie, token, chunked=chunked)
        after = memory(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large", answer[:300]
    text = rest.decode(errors="replace")
    assert "The file is larger than the import limit of 20 MiB." in text  # problem
    assert "Uploads are capped" in text  # why
    assert "Split the file into smaller ones" in text  # fix
    # The peak resident memory grew by far less than the file: it was never held in memory.
    grown = after["VmHWM"] - before["VmRSS"]
    assert grown < 25 * MB, (before, after)
    # Nothing of the refused upload is left on disk (the small one is, until swept or applied).
    left = [p for p in (tmp_path / "keel-imports").glob("*.csv") if p.stat().st_size > 1024]
    assert left == []
