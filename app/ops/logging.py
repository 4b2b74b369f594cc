"""Logging: one JSON object per line under systemd, readable text on a terminal (OPS-3)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# The signed-in user's id, never the email (OPS-3); set by the session middleware.
user_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("user_id", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def under_systemd(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return bool(env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM"))


def choose_format(setting: str, stream: TextIO = sys.stderr) -> str:
    if setting != "auto":
        return setting
    if under_systemd() or not stream.isatty():
        return "json"
    return "text"


class JsonFormatter(logging.Formatter):
    # One encoder for every line: json.dumps with `default=` builds a new one each call.
    _encoder = json.JSONEncoder(default=str, ensure_ascii=False)
    # The formatted second, kept until the clock moves on: a busy server logs many lines in it.
    _second: tuple[int, str] = (-1, "")

    def _stamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        extra = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        if record.exc_info:
            extra["exc"] = self.formatException(record.exc_info)
        return self.line(
            record.created, level=record.levelname, name=record.name, msg=record.getMessage(),
            extra=extra,
        )  # fmt: skip

    def line(
        self, created: float, *, level: str, name: str, msg: str, extra: dict[str, Any]
    ) -> str:
        """The JSON line of one message (`log_direct` writes it without a LogRecord)."""
        out: dict[str, Any] = {
            "time": self._stamp(created, (created - int(created)) * 1000),
            "level": level.lower(),
            "logger": name,
            "msg": msg,
        }
        rid, uid = request_id_var.get(), user_id_var.get()
        if rid:
            out["request_id"] = rid
        if uid is not None:
            out["user_id"] = uid
        out.update(extra)
        return self._encoder.encode(out)


# The handler setup_logging installed, while it writes JSON: `log_direct` may write to it.
_direct: list[logging.StreamHandler[TextIO]] = []


def log_direct(logger: logging.Logger, msg: str, extra: dict[str, Any]) -> None:
    """`logger.info(msg, extra=extra)`, the same line, at a fraction of the cost.

    The access log writes a line for every request. Through `logging`, that line builds a
    LogRecord (two dozen attributes), walks the handlers and filters, and picks the extra
    fields back out of the record: about a twentieth of the CPU of a small page. When nothing
    but the JSON handler of setup_logging would see the line (no filter, no other handler,
    no level that drops it; a test's log capture is another handler), it is formatted and
    written here directly. Otherwise it goes through `logging` as usual."""
    handler = _direct[0] if _direct else None
    if handler is None or not _only_to(logger, handler):
        logger.info(msg, extra=extra)
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter)  # _direct is set only with one
    text = formatter.line(time.time(), level="INFO", name=logger.name, msg=msg, extra=extra)
    try:
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(text + handler.terminator)
            handler.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stream: as `logging` would, the request goes on without it


def _only_to(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether an INFO line of `logger` reaches `handler` alone, unfiltered and unchanged."""
    if not logger.isEnabledFor(logging.INFO) or handler.level > logging.INFO or handler.filters:
        return False
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return False
        if node.handlers:
            return node.handlers == [handler] and node.parent is None
        if not node.propagate:
            return False
        node = node.parent
    return False


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        rid = request_id_var.get()
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        if extra:
            line += f"  {extra}"
        if rid and "request_id" not in extra:
            line += f"  request_id={rid}"
        uid = user_id_var.get()
        if uid is not None and "user_id" not in extra:
            line += f"  user_id={uid}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: str, level: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    json_lines = choose_format(fmt, stream) == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _direct[:] = [handler] if json_lines else []
    # Neither format prints the caller's file and line, the thread, the process or its name,
    # yet by default every record looks them up (a walk up the stack, a getpid() system call):
    # a few per cent of a page's CPU for the access line alone. The logging HOWTO's
    # "Optimization" section names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(level.upper())
    # aiohttp's own access logger would duplicate ours (and log query strings).
    logging.getLogger("aiohttp.access").disabled = True
