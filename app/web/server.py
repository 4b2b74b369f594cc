"""Run the app: listen (TCP, unix, or systemd sockets), notify systemd, stop gracefully (OPS-1)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import stat

from aiohttp import web

from app.config import Config
from app.errors import KeelError
from app.ops import systemd
from app.web import keys
from app.web.app import build_app
from app.web.connections import GuardedRunner, Limits, QuietFilter

log = logging.getLogger("keel.serve")


def _sites(
    runner: web.AppRunner, config: Config, sockets: list[socket.socket] | None
) -> list[web.BaseSite]:
    inherited = sockets if sockets is not None else systemd.listen_sockets()
    if inherited:
        return [web.SockSite(runner, sock) for sock in inherited]
    if config.listen.startswith("unix:"):
        path = config.listen[5:]
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a stale socket from a previous run
        return [web.UnixSite(runner, path)]
    host, _, port = config.listen.rpartition(":")
    return [web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True)]


def _listen_error(site: web.BaseSite, config: Config, exc: OSError) -> KeelError:
    return listen_error(site.name, isinstance(site, web.UnixSite), config, exc)


def listen_error(name: str, unix: bool, config: Config, exc: OSError) -> KeelError:
    """Say why binding failed, by its cause: a missing directory is not a busy address."""
    if unix:
        path = config.listen[5:]
        parent = os.path.dirname(path) or "."
        if exc.errno == errno.ENOENT:
            return KeelError(
                f"the directory {parent} of the unix socket does not exist",
                why=f"Keel creates the socket {path} but not the directories above it",
                fix=f"create it (mkdir -p {parent}, owned by the user Keel runs as); under"
                " systemd, RuntimeDirectory= in the unit creates it at every start",
            )
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return KeelError(
                f"cannot create the unix socket {path}: {exc.strerror}",
                why=f"the user Keel runs as may not write in {parent}",
                fix=f"let that user write in {parent}, or choose another path with --listen",
            )
    if exc.errno == errno.EADDRINUSE:
        return KeelError(
            f"cannot listen on {name}: the address is already in use",
            why="another process (or another Keel) holds the address",
            fix="choose another address with --listen, or stop the other process",
        )
    return KeelError(
        f"cannot listen on {name}: {exc.strerror}",
        why="the operating system refused the address",
        fix="check the address given with --listen (listen in the configuration)",
    )


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def memory_mib(pid: int | str = "self") -> tuple[float, float] | None:
    """(RSS, PSS) of a process in MiB from /proc; PSS shares pages fairly between the
    processes that map them, so the PSS of all workers adds up to what they really use."""
    values: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    values[name] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    if "Rss" not in values:
        return None
    return values["Rss"], values.get("Pss", values["Rss"])


async def serve(
    config: Config,
    *,
    ready: asyncio.Event | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish within shutdown_timeout.

    `sockets`: already listening sockets to accept on (a worker under the supervisor)."""
    app = build_app(config)
    runner = GuardedRunner(
        app,
        Limits.from_config(config),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.shutdown_timeout,
        # Idle between requests, and a half-sent later request: aiohttp's timer, which data
        # does not reset. The first request head has its own, shorter deadline (Guard).
        keepalive_timeout=config.http_keepalive_timeout,
    )
    # Should descriptors run out anyway (other processes, a lower limit), asyncio logs each
    # refused accept with a traceback, thousands a second: one line per interval instead.
    quiet = QuietFilter()
    logging.getLogger("asyncio").addFilter(quiet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Pool opens and migrations are checked here: a failure stops before we listen.
    try:
        await runner.setup()
    except BaseException:
        # A start-up context that failed (declarations that do not match the catalog) leaves
        # the ones before it open: close them now (the pool), not in a garbage collector's
        # finaliser that logs a traceback on the way out.
        await app.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        logging.getLogger("asyncio").removeFilter(quiet)
        raise
    watchdog: asyncio.Task[None] | None = None
    try:
        sites = _sites(runner, config, sockets)
        for site in sites:
            try:
                await site.start()
            except OSError as exc:
                raise _listen_error(site, config, exc) from None
        names = ", ".join(s.name for s in sites)
        # What start-up built (modules, settings, the catalog, routes) lives as long as the
        # process. Moved out of the collector's reach, a full collection (every thousand or so
        # requests) no longer walks all of it again: tens of milliseconds less each time, a
        # pause every request in flight waits out. Garbage from start-up is collected first.
        gc.collect()
        gc.freeze()
        memory = memory_mib()
        rss = round(memory[0], 1) if memory else None
        log.info(
            "serving on %s (schema %s, memory %s MiB)",
            names,
            app[keys.SCHEMA_VERSION],
            rss if rss is not None else "?",
            extra={"listen": names, "rss_mib": rss},
        )
        systemd.notify(f"READY=1\nSTATUS=serving on {names}\nMAINPID={os.getpid()}")
        interval = systemd.watchdog_interval()
        if interval:
            watchdog = asyncio.create_task(_watchdog(interval))
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: finishing requests in flight")
        systemd.notify("STOPPING=1")
    finally:
        if watchdog:
            watchdog.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        logging.getLogger("asyncio").removeFilter(quiet)
        log.info("stopped")
