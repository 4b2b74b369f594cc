"""The append-only governance log `.keel/ai/log.jsonl`: one JSON object per line, appended
under an exclusive lock so writers in several processes never interleave."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import KeelError

LOG_FILE = Path(".keel") / "ai" / "log.jsonl"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def append(root: Path, event: str, **fields: Any) -> dict[str, Any]:
    """Add one line; the whole line is written with one write() under flock(LOCK_EX)."""
    record = {"at": now(), "event": event, **{k: v for k, v in fields.items() if v is not None}}
    data = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode()
    path = root / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:  # a short write would otherwise leave half a line
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return record


def read(root: Path) -> list[dict[str, Any]]:
    path = root / LOG_FILE
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        for number, raw in enumerate(fh, 1):
            try:
                records.append(json.loads(raw))
            except ValueError:
                raise KeelError(
                    f"{LOG_FILE} line {number} is not a JSON record",
                    why="the log is append-only; a damaged line means it was edited by hand",
                    fix="restore the file from version control",
                ) from None
    return records
