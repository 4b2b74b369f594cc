"""The JSON log line and the request id keep their shape (they are built the cheap way now)."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

from app.ops import logging as keel_logging
from app.ops.logging import JsonFormatter, log_direct, request_id_var, setup_logging, user_id_var
from app.web.requestinfo import uuid7


def _record(created: float, msg: str = "GET /admin/ 200", **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "keel.access", "levelname": "INFO", "msg": msg})
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_time_ids_and_extras() -> None:
    fmt = JsonFormatter()
    rid, uid = request_id_var.set("r" * 20), user_id_var.set(7)
    try:
        first = json.loads(fmt.format(_record(1_700_000_000.25, status=200, who=object())))
        same_second = json.loads(fmt.format(_record(1_700_000_000.5)))
        next_second = json.loads(fmt.format(_record(1_700_000_001.125, msg="élan")))
    finally:
        request_id_var.reset(rid)
        user_id_var.reset(uid)
    assert first["time"] == "2023-11-14T22:13:20.250Z"
    assert same_second["time"] == "2023-11-14T22:13:20.500Z"
    assert next_second["time"] == "2023-11-14T22:13:21.125Z"
    assert first["request_id"] == "r" * 20 and first["user_id"] == 7
    assert first["status"] == 200 and first["who"].startswith("<object object")  # default=str
    assert next_second["msg"] == "élan"  # not escaped to \\u00e9


def test_request_ids_are_uuid7_text() -> None:
    ids = [uuid7() for _ in range(200)]
    assert len(set(ids)) == 200
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", text
        )


def test_the_direct_access_line_equals_the_logging_one_and_gives_way_to_other_handlers() -> None:
    """`log_direct` skips `logging` only when the JSON handler alone would see the line."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    log = logging.getLogger("keel.access")
    rid, uid = request_id_var.set("r1"), user_id_var.set(42)
    try:
        setup_logging("json", "info", stream)
        extra = {"method": "GET", "path": "/a%s", "status": 200, "user_id": 42}
        log_direct(log, "GET /a%s 200", extra)
        log.info("GET /a%s 200", extra=extra)
        direct, usual = (json.loads(line) for line in stream.getvalue().splitlines())
        assert direct.pop("time")[:10] == usual.pop("time")[:10]
        assert direct == usual
        assert list(direct) == list(usual)  # the same keys in the same order
        # A second handler (a test's capture, an operator's extra file) sees the line too.
        seen: list[logging.LogRecord] = []
        other = logging.Handler()
        other.emit = seen.append  # type: ignore[method-assign]
        root.addHandler(other)
        log_direct(log, "GET /b 200", {"status": 200})
        assert [r.getMessage() for r in seen] == ["GET /b 200"]
        assert len(stream.getvalue().splitlines()) == 3
        root.removeHandler(other)
        # A level that drops INFO drops the direct line as well.
        log.setLevel(logging.WARNING)
        log_direct(log, "GET /c 200", {})
        assert len(stream.getvalue().splitlines()) == 3
    finally:
        log.setLevel(logging.NOTSET)
        request_id_var.reset(rid)
        user_id_var.reset(uid)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        keel_logging._direct.clear()  # as if setup_logging had not run
