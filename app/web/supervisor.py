"""`keel serve --workers N`: one supervisor, N forked workers accepting on one listening socket.

The supervisor binds (or inherits from systemd) the listening sockets, forks the workers, which
each run the ordinary `serve()` on those sockets, and speaks for them to systemd: READY once
every worker is ready, WATCHDOG only while every worker pings, STOPPING on SIGTERM. It restarts
a worker that dies, and on SIGTERM asks every worker to finish its requests in flight.

Workers report to the supervisor over a private unix datagram socket with the same sd_notify
messages they would send to systemd; the kernel stamps each datagram with the sender's pid
(SO_PASSCRED), so no worker can speak for another. See docs/decisions.md, "Workers".
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import NoReturn

from app.config import Config
from app.errors import KeelError
from app.ops import systemd

log = logging.getLogger("keel.serve")

PING_INTERVAL = 1.0  # how often a worker pings the supervisor
UNHEALTHY_AFTER = 5.0  # a worker silent this long makes the supervisor stop pinging systemd
QUICK_EXIT = 5.0  # a worker dying sooner than this after its start is restarted with a delay
MAX_RESTART_DELAY = 10.0
BACKLOG = 1024


@dataclass
class Worker:
    index: int
    pid: int
    started: float
    ready: bool = False
    last_ping: float = 0.0
    exits: int = 0  # quick exits in a row, for the restart delay


@dataclass
class Supervisor:
    config: Config
    count: int
    sockets: list[list[socket.socket]]  # what each worker accepts on, by worker index
    names: str
    workers: dict[int, Worker] = field(default_factory=dict)  # by pid
    wake: tuple[socket.socket, ...] = ()
    pending: dict[int, float] = field(default_factory=dict)  # index -> when to start it
    quick_exits: dict[int, int] = field(default_factory=dict)
    stopping: bool = False
    announced: bool = False

    def run(self) -> int:
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        channel.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        name = f"keel-supervisor-{os.getpid()}-{secrets.token_hex(6)}"
        channel.bind("\0" + name)  # abstract: nothing on disk, gone with the process
        channel.setblocking(False)
        self.channel, self.channel_address = channel, "@" + name
        wake_r, wake_w = socket.socketpair()
        self.wake = (wake_r, wake_w)
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.getsignal(sig) for sig in handled}
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select
        # Modules imported so far are shared copy-on-write with every worker; freezing them
        # keeps the collector from touching (and so copying) their pages in each worker.
        gc.collect()
        gc.freeze()
        failure = 0
        try:
            for index in range(self.count):
                self._start(index)
            failure = self._loop(wake_r)
            self._drain(wake_r)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            wake_r.close()
            wake_w.close()
            channel.close()
            self._close_sockets()
        log.info("stopped")
        return failure

    def _close_sockets(self) -> None:
        for group in self.sockets:
            for sock in group:
                sock.close()

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    # ---- workers ----------------------------------------------------------------------

    def _start(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            _worker_main(index, self)
        self.workers[pid] = Worker(index, pid, time.monotonic())
        self.pending.pop(index, None)

    def _reap(self) -> int:
        """Collect exited workers; a failure code when a worker could not start at all."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == 0:
                return 0
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            how = f"signal {-code}" if code < 0 else f"code {code}"
            if self.stopping:
                log.info("worker %d (pid %d) stopped with %s", worker.index, pid, how)
                continue
            if not self.announced and not worker.ready:
                # It failed before it ever served (pending migrations, a busy address, a
                # database that refuses us): every worker would fail the same way.
                log.error("worker %d (pid %d) could not start (%s)", worker.index, pid, how)
                return code if code > 0 else 1
            lived = time.monotonic() - worker.started
            quick = self.quick_exits.get(worker.index, 0) + 1 if lived < QUICK_EXIT else 0
            self.quick_exits[worker.index] = quick
            delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (quick - 1)) if quick else 0.0
            log.warning(
                "worker %d (pid %d) exited with %s; starting a new one%s",
                worker.index,
                pid,
                how,
                f" in {delay:g}s" if delay else "",
                extra={"worker": worker.index, "pid": pid, "exit": how},
            )
            self.pending[worker.index] = time.monotonic() + delay
            self._status()

    def _read_channel(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.channel.recvmsg(
                    4096, socket.CMSG_SPACE(struct.calcsize("3i"))
                )
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            worker = self.workers.get(pid)
            if worker is None:
                continue
            lines = data.decode(errors="replace").splitlines()
            now = time.monotonic()
            if "READY=1" in lines and not worker.ready:
                worker.ready = True
                if self.announced:
                    log.info("worker %d (pid %d) is serving again", worker.index, pid)
                    self._status()
            if "READY=1" in lines or "WATCHDOG=1" in lines:
                worker.last_ping = now

    def _healthy(self, now: float) -> bool:
        live = [w for w in self.workers.values() if w.ready]
        return len(live) == self.count and all(now - w.last_ping < UNHEALTHY_AFTER for w in live)

    def _status(self) -> None:
        ready = sum(1 for w in self.workers.values() if w.ready)
        systemd.notify(f"STATUS=serving on {self.names}: {ready} of {self.count} workers ready")

    # ---- the loop -----------------------------------------------------------------------

    def _loop(self, wake: socket.socket) -> int:
        interval = systemd.watchdog_interval()
        next_ping = 0.0
        while not self.stopping:
            with contextlib.suppress(InterruptedError):
                select.select([self.channel, wake], [], [], 0.25)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                wake.recv(512)
            self._read_channel()
            failure = self._reap()
            if failure:
                return failure
            if self.stopping:
                break
            now = time.monotonic()
            for index, when in list(self.pending.items()):
                if when <= now:
                    self._start(index)
            if not self.announced and self._healthy(now):
                self.announced = True
                self._announce()
            if interval and self.announced and now >= next_ping and self._healthy(now):
                systemd.notify("WATCHDOG=1")
                next_ping = now + interval
        return 0

    def _announce(self) -> None:
        memory = [(w.index, w.pid, memory_of(w.pid)) for w in self.workers.values()]
        mine = memory_of(os.getpid())
        rss = [round(m[0], 1) for _, _, m in sorted(memory) if m]
        pss_total = sum(m[1] for _, _, m in memory if m) + (mine[1] if mine else 0.0)
        log.info(
            "serving on %s with %d workers; memory per worker %s MiB (RSS), all processes "
            "together %.1f MiB (PSS, shared pages counted once)",
            self.names,
            self.count,
            ", ".join(f"{r:g}" for r in rss) or "?",
            pss_total,
            extra={
                "listen": self.names,
                "workers": self.count,
                "rss_mib": rss,
                "pss_total_mib": round(pss_total, 1),
            },
        )
        systemd.notify(
            f"READY=1\nSTATUS=serving on {self.names}: {self.count} of {self.count} workers "
            f"ready\nMAINPID={os.getpid()}"
        )

    def _drain(self, wake: socket.socket) -> None:
        """SIGTERM to every worker; each finishes its requests in flight, then exits."""
        self.stopping = True
        self.pending.clear()
        log.info("stopping: %d workers finish their requests in flight", len(self.workers))
        systemd.notify("STOPPING=1")
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # Our copies of the listening sockets go now: once the workers close theirs, new
        # connections are refused (or, under socket activation, wait in systemd's socket for
        # the next start) instead of queueing where nobody will accept them.
        self._close_sockets()
        deadline = time.monotonic() + self.config.shutdown_timeout + 10
        while self.workers and time.monotonic() < deadline:
            with contextlib.suppress(InterruptedError):
                select.select([self.channel, wake], [], [], 0.25)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                wake.recv(512)
            self._read_channel()
            self._reap()
        for pid in list(self.workers):
            log.warning("worker (pid %d) did not stop in time: killed", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.workers.clear()


def memory_of(pid: int) -> tuple[float, float] | None:
    from app.web.server import memory_mib

    return memory_mib(pid)


def _worker_main(index: int, sup: Supervisor) -> NoReturn:
    """The child side of fork: serve on the inherited sockets, report to the supervisor."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        # The supervisor's descriptors are not the worker's to keep: the other workers'
        # listening sockets above all, which would stay open (and accept into a queue nobody
        # reads) for as long as this worker lives.
        own = {id(sock) for sock in sup.sockets[index]}
        for group in sup.sockets:
            for sock in group:
                if id(sock) not in own:
                    sock.close()
        for extra in (sup.channel, *sup.wake):
            extra.close()
        # The frozen objects stay frozen: collecting them would copy their pages per worker.
        os.environ["NOTIFY_SOCKET"] = sup.channel_address
        os.environ["WATCHDOG_USEC"] = str(int(PING_INTERVAL * 2_000_000))
        os.environ["WATCHDOG_PID"] = str(os.getpid())
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        import asyncio

        from app.db import pool
        from app.web import metrics
        from app.web.server import serve

        metrics.use_slot(index)
        pool.APPLICATION_NAME = f"keel/{index}"  # which worker, in pg_stat_activity
        asyncio.run(serve(sup.config, sockets=list(sup.sockets[index])))
        code = 0
    except KeelError as exc:
        print(exc.render(), file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def bind(config: Config, count: int) -> tuple[list[list[socket.socket]], str]:
    """The listening sockets, by worker: systemd's or a unix socket shared by all, else one
    TCP socket per worker on the same address (SO_REUSEPORT), all held by the supervisor."""
    from app.web.server import listen_error

    inherited = systemd.listen_sockets()
    if inherited:
        names = ", ".join(_sock_name(s) for s in inherited)
        return [inherited] * count, names
    if config.listen.startswith("unix:"):
        path = config.listen[5:]
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            raise listen_error(f"http://unix:{path}:", True, config, exc) from None
        return [[sock]] * count, f"http://unix:{path}:"
    host, _, port = config.listen.rpartition(":")
    host = host.strip("[]")
    name = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise listen_error(name, False, config, exc) from None
    family, kind, proto, _canon, address = infos[0]
    groups: list[list[socket.socket]] = []
    for _ in range(count):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            for group in groups:
                group[0].close()
            raise listen_error(name, False, config, exc) from None
        groups.append([sock])
    return groups, name


def _sock_name(sock: socket.socket) -> str:
    address = sock.getsockname()
    if isinstance(address, str | bytes):
        text = address.decode() if isinstance(address, bytes) else address
        return f"http://unix:{text}:"
    host, port = address[0], address[1]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def supervise(config: Config, count: int) -> int:
    """Run `count` workers until SIGTERM; the exit code of `keel serve`."""
    from app.web import metrics
    from app.web.app import build_app

    sockets, names = bind(config, count)
    # The routes are the metric labels; every worker builds the same app, so the layout of
    # the shared counters is fixed here, before the fork. Building it also imports every
    # module once, in memory the workers share.
    metrics.share_across(metrics.routes_of(build_app(config)), count)
    log.info("starting %d workers on %s", count, names)
    return Supervisor(config, count, sockets, names).run()
