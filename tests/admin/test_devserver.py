"""RES-4: `keel serve --dev` restarts on source changes and prints one ✓/✗ line per reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from app.web.devserver import DevServer, changes, probe, snapshot
from tests.helpers import REPO, free_port, keel_env

FAKE_SERVER = textwrap.dedent(
    """
    import http.server, pathlib, signal, sys
    root = pathlib.Path(sys.argv[1])
    if (root / "mode.py").read_text().strip() == "bad":
        print("Problem: resource declarations do not match the database: demo", file=sys.stderr)
        print("Why: every name must exist", file=sys.stderr)
        sys.exit(1)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv.serve_forever()
    """
)


def wait_for(lines: list[str], predicate: Callable[[str], bool], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if predicate(line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no matching line in {lines}")


def touch(path: Path, text: str) -> None:
    path.write_text(text)
    later = time.time() + 2  # mtime granularity: make the change visible at once
    os.utime(path, (later, later))


def test_snapshot_sees_new_changed_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.py").write_text("ignored")
    (tmp_path / "notes.bin").write_text("not watched")
    before = snapshot([tmp_path])
    assert list(before) == [str(tmp_path / "a.py")]
    touch(tmp_path / "a.py", "b")
    (tmp_path / "b.html").write_text("new")
    assert changes(before, snapshot([tmp_path])) == [
        str(tmp_path / "a.py"),
        str(tmp_path / "b.html"),
    ]


def test_reload_prints_one_line_per_reload_naming_the_problem(tmp_path: Path) -> None:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    mode = tmp_path / "mode.py"
    mode.write_text("good")
    port = free_port()
    out: list[str] = []
    dev = DevServer(
        [sys.executable, str(script), str(tmp_path), str(port)],
        f"127.0.0.1:{port}",
        [tmp_path],
        out=out.append,
        echo=lambda _line: None,
        interval=0.1,
    )
    stop = threading.Event()
    thread = threading.Thread(target=dev.run, args=(stop,))
    thread.start()
    try:
        assert wait_for(out, lambda s: True).startswith("✓ started: serving on")
        touch(mode, "bad")
        line = wait_for(out, lambda s: s.startswith("✗"))
        assert "mode.py changed" in line
        assert "Problem: resource declarations do not match the database: demo" in line
        assert "Why: every name must exist" in line
        touch(mode, "good")
        wait_for(out, lambda s: s.startswith("✓ reloaded after"))
        assert probe(f"127.0.0.1:{port}")
        assert len(out) == 3, out  # one line per start or reload, no more
    finally:
        stop.set()
        thread.join(15)
    assert not probe(f"127.0.0.1:{port}")  # the child was stopped with the supervisor


async def test_keel_serve_dev_revalidates_declarations_on_reload(
    tmp_path: Path, database_url: str, secret_key: str
) -> None:
    """The real command: a declaration broken by a schema change is named on the ✗ line."""
    port = free_port()
    watched = tmp_path / "watched.py"
    watched.write_text("# v1\n")
    env = keel_env(KEEL_DATABASE_URL=database_url, KEEL_SECRET_KEY=secret_key, NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--dev", "--listen", f"127.0.0.1:{port}",
         "--watch", str(tmp_path)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: [lines.append(x.rstrip("\n")) for x in proc.stdout], daemon=True
    )
    reader.start()
    try:
        assert "✓ started" in wait_for(lines, lambda s: s[:1] in "✓✗" and s != "", 40)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("ALTER TABLE technicians RENAME COLUMN bio TO biography")
            touch(watched, "# v2\n")
            # Other files under app/ may change too in a shared tree: wait for the line that
            # names this problem rather than for the very next line.
            line = wait_for(lines, lambda s: s.startswith("✗") and "no such column" in s, 40)
            assert "changed" in line and "'bio'" in line
            await conn.execute("ALTER TABLE technicians RENAME COLUMN biography TO bio")
            touch(watched, "# v3\n")
            wait_for(lines, lambda s: s.startswith("✓ reloaded"), 40)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert proc.returncode == 0
