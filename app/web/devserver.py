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
    try:
        if listen.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(listen[5:])
        else:
            host, _, port = listen.rpartition(":")
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        with sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
        return status_line.split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


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


def child_command(argv: Sequence[str]) -> list[str]:
    """The same `keel serve` invocation without --dev, as a fresh interpreter."""
    rest = [a for a in argv if a != "--dev"]
    return [sys.executable, "-m", "app", *rest]


def run_dev(argv: Sequence[str], listen: str, extra_roots: Sequence[str] = ()) -> int:
    import app

    roots = [Path(app.__file__).resolve().parent, *(Path(p).resolve() for p in extra_roots)]
    server = DevServer(child_command(argv), listen, roots)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Watching {', '.join(str(r) for r in roots)} for changes; Ctrl-C stops.", flush=True)
    return server.run(stop)
