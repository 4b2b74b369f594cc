"""CPU seconds per test file, for finding where the suite's time goes.

Wall time is a poor guide on a shared machine; CPU seconds are not. With
`KEEL_TEST_CPU=path.json`, each pytest process writes the CPU seconds each test file cost:
its own, its children's, reaped or still running (subprocesses, servers, Chromium under
Playwright's driver), and the test PostgreSQL's (the postmaster daemonizes, so it is read from
/proc: its own time plus its reaped backends'). Clusters that tests start themselves (the demo
command) are not counted. A process that exits unreaped by its parent takes its time with it:
Chromium's renderers do when the browser closes, so put a cheap file after a browser file when
measuring it (the session's browser closes in the teardown of the last file).
Off by default; it changes nothing about how tests run. Each worker adds its entry to the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import time
from pathlib import Path

import pytest

_TICK = os.sysconf("SC_CLK_TCK")
_postmasters: dict[int, float] = {}  # live pid -> 0.0; stopped pid -> its final seconds
_first: dict[str, tuple[float, float]] = {}  # file -> (CPU, wall) at its first test
_last: dict[str, tuple[float, float]] = {}


def _proc_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17; after the ")" they start at index 11.
    return sum(int(f) for f in fields[11:15]) / _TICK


def watch_postmaster(pid: int) -> None:
    _postmasters[pid] = 0.0


def postmaster_stopping(pid: int) -> None:
    """Called just before the cluster stops: keep what it spent (shutdown costs little)."""
    if pid in _postmasters:
        _postmasters[pid] = _proc_seconds(pid) + sum(map(_proc_seconds, _live_descendants(pid)))


def _live_descendants(root: int) -> list[int]:
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, parent in parent_of.items() if parent == pid]
        found += kids
        frontier += kids
    return found


def cpu_now() -> float:
    """Seconds so far. A live descendant counts its own time and its reaped children's; when it
    is reaped its whole time moves into ours (RUSAGE_CHILDREN), so nothing counts twice."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    total += sum(_proc_seconds(pid) for pid in _live_descendants(os.getpid()))
    for pid, final in _postmasters.items():
        # Its checkpointer, WAL writer and other helpers live as long as it does.
        total += final or _proc_seconds(pid) + sum(map(_proc_seconds, _live_descendants(pid)))
    return total


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_runtest_logstart(nodeid: str) -> None:
    if os.environ.get("KEEL_TEST_CPU") and _file(nodeid) not in _first:
        _first[_file(nodeid)] = (cpu_now(), time.monotonic())


def pytest_runtest_logfinish(nodeid: str) -> None:
    if os.environ.get("KEEL_TEST_CPU"):
        _last[_file(nodeid)] = (cpu_now(), time.monotonic())


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("KEEL_TEST_CPU")
    if not out or not _first:
        return
    per_file = {
        f: {"cpu": round(end[0] - start[0], 2), "wall": round(end[1] - start[1], 2)}
        for f, start in _first.items()
        for end in [_last.get(f, start)]
    }
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    entry = {"total": round(cpu_now(), 2), "files": per_file}
    with open(out, "a+") as f:  # the workers finish together: one at a time
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        data = json.loads(text) if text else {}
        data[worker] = entry
        f.seek(0)
        f.truncate()
        f.write(json.dumps(data, indent=1))
