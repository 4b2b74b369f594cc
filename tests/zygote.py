"""`python -m app …` for the tests, forked from a process that has already imported Keel.

The CLI tests run `keel <verb>` as a real process, about 400 times a suite. Each run used to
start Python and import psycopg, aiohttp, jinja2 and Keel's own modules again: 0.1–0.2 s of CPU
a run, more than the command itself, and about a sixth of the suite's CPU. This is the fork
server pattern (multiprocessing's "forkserver" start method): one helper process per test
process imports all of that once, then forks a child per command. The child is still a real
process, with its own argv, environment, working directory, stdin, stdout, stderr and exit
status; only the interpreter start-up and the imports are shared. Nothing is imported that reads
the environment at import time, and the helper never runs a command itself, so no state of one
command reaches the next.

`run()` falls back to a fresh interpreter (plain `subprocess.run`) when the command needs one: an
environment that changes how Python itself starts (`PYTHON*` variables), a platform without
fork or descriptor passing, or `KEEL_TEST_FORKSERVER=0`. Tests about start-up itself (lazy
imports, the built executable) call `subprocess` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
# What the helper imports before it forks: the libraries and every command module.
_PRELOAD = (
    "psycopg",
    "psycopg_pool",
    "aiohttp.web",
    "jinja2",
    "argon2",
    "app.cli",
    "app.cli.common",
)
_READY = b"ready\n"


# -- the helper process ------------------------------------------------------------------------


def serve(path: str) -> None:
    """The helper's loop: one child per request; the exit status goes back when it ends.

    Requests arrive on a SOCK_SEQPACKET socket (one message each: the JSON request and the
    child's three standard descriptors). Replies: the child's pid at once, then its exit
    code. The helper ends when its parent closes the pipe on its stdin (the test process
    exited)."""
    import importlib
    import pkgutil

    import app.cli

    for name in _PRELOAD:
        importlib.import_module(name)
    for info in pkgutil.iter_modules(app.cli.__path__, "app.cli."):
        importlib.import_module(info.name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    os.write(1, _READY)
    waiting: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [], 0.01 if waiting else 1.0)
        if sys.stdin in ready and not os.read(0, 1):
            return  # the test process is gone
        if listener in ready:
            conn, _ = listener.accept()
            message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _child(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            _reply(conn, pid)
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid)
            _reply(conn, os.waitstatus_to_exitcode(status))
            conn.close()


def _reply(conn: socket.socket, number: int) -> None:
    with contextlib.suppress(OSError):  # the test stopped waiting (a timeout): nobody to tell
        conn.send(str(number).encode())


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become `python -m app <args>` in the request's setting; never returns."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = ["-m", *request["args"]]
        import runpy

        try:
            runpy.run_module("app", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("message"): printed to stderr, status 1, as Python does
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # what interpreter shutdown would run (logging flushes)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


# -- the test side -----------------------------------------------------------------------------


class _Helper:
    """This test process's helper, started on first use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.path = ""
        self.env: dict[str, str] = {}

    def start(self, env: Mapping[str, str]) -> None:
        # A short path: AF_UNIX names are limited to about 100 bytes.
        self.path = tempfile.mktemp(prefix="keel-fork-", suffix=".sock", dir="/tmp")
        self.env = {k: v for k, v in env.items() if k.startswith("PYTHON")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from tests.zygote import serve; serve({self.path!r})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(env),
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != _READY:
            raise RuntimeError(f"the test fork server did not start: {line!r}")
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.path:
            Path(self.path).unlink(missing_ok=True)

    def fits(self, env: Mapping[str, str]) -> bool:
        """Whether a child of the helper starts as `python` would with `env`."""
        return {k: v for k, v in env.items() if k.startswith("PYTHON")} == self.env

    def run(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        input: str | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        files: list[IO[bytes]] = [tempfile.TemporaryFile() for _ in range(3)]  # noqa: SIM115
        try:
            if input is not None:
                files[0].write(input.encode())
                files[0].seek(0)
            request = {"args": list(args), "env": dict(env), "cwd": str(cwd)}
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
                conn.connect(self.path)
                socket.send_fds(conn, [json.dumps(request).encode()], [f.fileno() for f in files])
                pid = int(conn.recv(64))
                conn.settimeout(timeout)
                try:
                    code = int(conn.recv(64))
                except TimeoutError:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(_argv(args), timeout) from None
            out, err = (_text(f) for f in files[1:])
        finally:
            for f in files:
                f.close()
        return subprocess.CompletedProcess(_argv(args), code, out, err)


def _argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def _text(f: IO[bytes]) -> str:
    """What `subprocess.run(text=True)` gives: decoded, universal newlines."""
    f.seek(0)
    return f.read().decode().replace("\r\n", "\n").replace("\r", "\n")


_helper = _Helper()
_USABLE = hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path = REPO,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([python, "-m", "app", *args], capture_output=True, text=True, …)`, from
    the fork server when it can stand in for a fresh interpreter (see the module docstring).
    stdin is empty unless `input` is given."""
    if _USABLE and os.environ.get("KEEL_TEST_FORKSERVER", "1") != "0":
        if _helper.proc is None:
            _helper.start(env)
        if _helper.fits(env):
            return _helper.run(args, env=env, cwd=cwd, input=input, timeout=timeout)
    return subprocess.run(
        _argv(args),
        env=dict(env),
        capture_output=True,
        text=True,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        timeout=timeout,
        cwd=cwd,
    )
