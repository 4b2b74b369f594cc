"""shiv's extraction directory: where this executable is unpacked, and pruning old builds (OPS-7)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

import app
from app.buildinfo import DEV_BUILD_ID, build_info

# Every keel process holds a shared lock on this file in its extraction directory for its
# whole life, so a newer build never deletes code from under a running `keel serve`.
IN_USE_MARKER = ".keel_in_use"


def extraction_dir() -> Path | None:
    """The directory shiv unpacked this build into, or None when not running from the artifact."""
    build_id = build_info()["build_id"]
    if build_id == DEV_BUILD_ID:
        return None
    # shiv's layout: <root>/<artifact file name>_<build id>/site-packages/app/__init__.py
    site = Path(app.__file__).parent.parent
    if site.name != "site-packages" or not site.parent.name.endswith(f"_{build_id}"):
        return None
    return site.parent


def extraction_root() -> Path:
    """Where shiv unpacks (or would unpack) executables: $SHIV_ROOT, else ~/.shiv."""
    current = extraction_dir()
    if current is not None:
        return current.parent
    # The same rules as shiv's bootstrap (cache_path), for `keel doctor` run from source.
    root = os.environ.get("SHIV_ROOT", "")
    if root.startswith("$"):
        root = os.environ.get(root[1:], root[1:])
    return Path(root).expanduser() if root else Path("~/.shiv").expanduser()


def prune_old_extractions() -> list[Path]:
    """Mark this build's directory in use and delete other builds' idle ones; never raises."""
    current = extraction_dir()
    if current is None:
        return []
    try:
        mark_in_use(current)
        return prune_siblings(current)
    except OSError:
        return []


def mark_in_use(directory: Path) -> None:
    try:
        fd = os.open(directory / IN_USE_MARKER, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
    # Deliberately never closed: the lock must last until the process exits.


def prune_siblings(current: Path) -> list[Path]:
    """Remove extraction directories of other builds of the same executable name.

    A build is skipped while shiv is extracting it (its lock file is held) or while any of
    its processes runs (IN_USE_MARKER is held). Returns the directories actually removed.
    """
    root = current.parent
    name, sep, build_id = current.name.rpartition("_")
    if not sep or not name:
        return []
    ident = "([0-9a-f]{16,64})"
    pattern = re.compile(rf"{re.escape(name)}_{ident}(?:\.tmp)?|\.{re.escape(name)}_{ident}_lock")
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    others = set()
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match:
            others.add(match.group(1) or match.group(2))
    others.discard(build_id)
    removed: list[Path] = []
    for other in sorted(others):
        removed += _remove_build(root, f"{name}_{other}")
    return removed


def _try_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_build(root: Path, dirname: str) -> list[Path]:
    target, staging = root / dirname, root / f"{dirname}.tmp"
    lock = root / f".{dirname}_lock"
    try:
        lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return []
    try:
        if not _try_exclusive(lock_fd):
            return []  # shiv is extracting that build right now
        try:
            marker_fd: int | None = os.open(target / IN_USE_MARKER, os.O_RDONLY)
        except OSError:
            marker_fd = None
        try:
            if marker_fd is not None and not _try_exclusive(marker_fd):
                return []  # a process of that build is running
            existed = [p for p in (target, staging) if p.is_dir() and not p.is_symlink()]
            for path in existed:
                shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                lock.unlink()
            return [p for p in existed if not p.exists()]
        finally:
            if marker_fd is not None:
                os.close(marker_fd)
    finally:
        os.close(lock_fd)
