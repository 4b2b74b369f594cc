"""Run the app: listen (TCP, unix, or systemd sockets), notify systemd, stop gracefully (OPS-1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat

from aiohttp import web

from app.config import Config
from app.ops import systemd
from app.web import keys
from app.web.app import build_app

log = logging.getLogger("keel.serve")


def _sites(runner: web.AppRunner, config: Config) -> list[web.BaseSite]:
    inherited = systemd.listen_sockets()
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


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish within shutdown_timeout."""
    app = build_app(config)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=config.shutdown_timeout
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Pool opens and migrations are checked here: a failure stops before we listen.
    await runner.setup()
    watchdog: asyncio.Task[None] | None = None
    try:
        sites = _sites(runner, config)
        for site in sites:
            try:
                await site.start()
            except OSError as exc:
                from app.errors import KeelError

                raise KeelError(
                    f"cannot listen on {site.name}: {exc.strerror}",
                    why="another process may hold the address, or the path is not writable",
                    fix="choose another address with --listen or stop the other process",
                ) from None
        names = ", ".join(s.name for s in sites)
        log.info(
            "serving on %s (schema %s)", names, app[keys.SCHEMA_VERSION], extra={"listen": names}
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
        log.info("stopped")
