"""CPU per request, by process, while wrk loads one page of a running server.

Instructions per request (callgrind) count only the server's own process. When the cores are
full (two workers on two cores, say) what PostgreSQL and the load generator spend per request
counts as much. This reads every process's CPU ticks from /proc before and after a wrk run and
prints, per request: the server's processes (the given pid and its children), PostgreSQL's
(every process whose command line starts with "postgres"), wrk's and the rest.

Usage:
  .venv/bin/python bench/cpu_share.py --pid SERVER_PID --url URL [--cookie 'name=value']
      [--duration 8] [--connections 8]

Start the server to measure (`dist/keel serve --workers 2`, or the floor server), sign in,
pass its cookie. Run nothing else meanwhile: other processes' CPU shows under "other".
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def ticks() -> dict[int, tuple[str, int, int]]:
    """pid → (command line, parent pid, user + system ticks) of every process now."""
    out: dict[int, tuple[str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry)] = (cmd, int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def tree(root: int, procs: dict[int, tuple[str, int, int]]) -> set[int]:
    found, grew = {root}, True
    while grew:
        more = {pid for pid, (_c, parent, _t) in procs.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pid", type=int, required=True, help="the server's (supervisor's) pid")
    ap.add_argument("--url", required=True)
    ap.add_argument("--cookie", default="", help="a Cookie header value, e.g. keel_session=…")
    ap.add_argument("--duration", type=int, default=8, help="seconds of load")
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "headers.lua"
        script.write_text(
            f'wrk.headers["Cookie"] = "{args.cookie}"\nwrk.headers["Accept"] = "text/html"\n'
        )
        before, started = ticks(), os.times()
        out = subprocess.run(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script),
             args.url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        after, ended = ticks(), os.times()
    found = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found or not rate:
        raise SystemExit(f"wrk gave no figures:\n{out}")
    requests = int(found.group(1))
    server = tree(args.pid, after)
    spent: dict[str, int] = {}
    for pid, (cmd, _parent, total) in after.items():
        used = total - before.get(pid, (cmd, 0, 0))[2]
        if used <= 0:
            continue
        kind = (
            "server" if pid in server else "PostgreSQL" if cmd.startswith("postgres") else "other"
        )
        spent[kind] = spent.get(kind, 0) + used
    wrk_ticks = (ended.children_user + ended.children_system) - (
        started.children_user + started.children_system
    )
    spent["wrk"] = round(wrk_ticks * TICK)
    print(f"{float(rate.group(1)):,.0f} requests a second, {requests:,} requests")
    for kind in ("server", "PostgreSQL", "wrk", "other"):
        used = spent.get(kind, 0)
        print(
            f"  {kind:<11} {used / TICK:7.2f} s CPU  {1e6 * used / TICK / requests:8.1f} µs a request"
        )


if __name__ == "__main__":
    main()
