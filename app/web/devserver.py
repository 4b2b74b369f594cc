"""`keel serve --dev`: restart the server on source changes, one ✓/✗ line per reload (RES-4)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WATCHED_SUFFIXES = frozenset({".py", ".html", ".sql", ".css", ".js", ".toml", ".svg"})
SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", "node_modules", ".mypy_cache"})
# Lines of the child's stderr that explain why it stopped (CLI-1 shape, CONF-5 one-liner).
PROBLEM_PREFIXES = ("Problem:", "Configuration error:")


def snapshot(roots: Iterable[Path]) -> dict[str, float]:
    """mtime of every watched file under the roots; polling needs no extra dependency."""
    seen: dict[str, float] = {}
    for root in roots:
        if root.is_file():
            with contextlib.suppress(OSError):
                seen[str(root)] = root.stat().st_mtime
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            for name in filenames:
                if Path(name).suffix in WATCHED_SUFFIXES:
                    path = os.path.join(dirpath, name)
                    with contextlib.suppress(OSError):
                        seen[path] = os.stat(path).st_mtime
    return seen


def changes(before: dict[str, float], after: dict[str, float]) -> list[str]:
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


def probe(listen: str, timeout: float = 1.0) -> bool:
    """True when GET /healthz answers on `listen` (HOST:PORT or unix:/path)."""
    status, _body = fetch(listen, "/healthz", timeout)
    return status == 200


def fetch(listen: str, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """(status, raw response) of GET path on `listen`; (0, b"") when nothing answers."""
    try:
        if listen.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(listen[5:])
        else:
            host, _, port = listen.rpartition(":")
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        with sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        raw = b"".join(chunks)
        code = raw.split(b"\r\n", 1)[0].split(b" ")[1:2]
        return (int(code[0]) if code and code[0].isdigit() else 0), raw
    except OSError:
        return 0, b""


@dataclass
class Child:
    """One server process; its stderr is echoed and the lines naming a problem are kept."""

    proc: subprocess.Popen[str]
    problem: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, command: Sequence[str], echo: Callable[[str], None]) -> Child:
        proc = subprocess.Popen(
            list(command), stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1
        )
        child = cls(proc)

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                text = line.rstrip("\n")
                if text.startswith(PROBLEM_PREFIXES):
                    child.problem = [text]
                elif child.problem and text.startswith(("Why:", "Fix:")):
                    child.problem.append(text)
                echo(text)

        child.reader = threading.Thread(target=pump, daemon=True)
        child.reader.start()
        return child

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader:
            self.reader.join(2)

    def summary(self) -> str:
        if self.problem:
            return " ".join(self.problem)
        return f"the server exited with status {self.proc.returncode}"


@dataclass
class DevServer:
    """Watch → stop → start → wait for /healthz; the child re-validates declarations at start."""

    command: Sequence[str]
    listen: str
    roots: Sequence[Path]
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    echo: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    interval: float = 0.4
    ready_timeout: float = 30.0
    child: Child | None = None
    reloads: int = 0

    def launch(self, why: str) -> bool:
        started = time.monotonic()
        if self.child:
            self.child.stop()
        self.child = Child.start(self.command, self.echo)
        self.reloads += 1
        deadline = started + self.ready_timeout
        while time.monotonic() < deadline:
            if self.child.proc.poll() is not None:
                self.child.stop()
                self.out(f"✗ {why}: {self.child.summary()}")
                return False
            if probe(self.listen):
                took = time.monotonic() - started
                self.out(f"✓ {why}: serving on {self.listen}, declarations valid ({took:.1f}s)")
                return True
            time.sleep(0.05)
        self.out(f"✗ {why}: no answer on {self.listen} within {self.ready_timeout:.0f}s")
        return False

    def run(self, stop: threading.Event) -> int:
        state = snapshot(self.roots)
        self.launch("started")
        while not stop.wait(self.interval):
            current = snapshot(self.roots)
            changed = changes(state, current)
            if not changed:
                continue
            time.sleep(0.15)  # editors write in several steps: take them as one change
            state = snapshot(self.roots)
            first = os.path.relpath(changed[0])
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            self.launch(f"reloaded after {first}{more} changed")
        if self.child:
            self.child.stop()
        return 0


def child_command(argv: Sequence[str], site_dir: str | None = None) -> list[str]:
    """The same `keel serve` invocation without --dev (and its directory), as a fresh process:
    this executable again when running from one, else the interpreter with `-m app`."""
    rest: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--dev":
            skip = site_dir is not None
            continue
        if arg.startswith("--dev="):
            continue
        rest.append(arg)
    if site_dir is not None:
        rest = ["--site", site_dir, *rest]
    from app.ops.extraction import extraction_dir

    if extraction_dir() is not None and sys.argv[0] and Path(sys.argv[0]).is_file():
        return [sys.executable, str(Path(sys.argv[0]).resolve()), *rest]
    return [sys.executable, "-m", "app", *rest]


def run_dev(
    argv: Sequence[str],
    listen: str,
    extra_roots: Sequence[str] = (),
    site_dir: str | None = None,
) -> int:
    """Serve and reload. Watches Keel's own source (from a checkout), the site project (from
    --dev DIR, --site or site_dir) and any --watch paths."""
    import app
    from app import sites

    roots: list[Path] = []
    from app.ops.extraction import extraction_dir

    if extraction_dir() is None:
        roots.append(Path(app.__file__).resolve().parent)
    site = sites.active()
    if site is not None and not site.embedded:
        roots.append(site.root)
    roots.extend(Path(p).resolve() for p in extra_roots)
    server = DevServer(child_command(argv, site_dir), listen, roots)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Watching {', '.join(str(r) for r in roots)} for changes; Ctrl-C stops.", flush=True)
    return server.run(stop)
