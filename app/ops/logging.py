"""Logging: one JSON object per line under systemd, readable text on a terminal (OPS-3)."""

from __future__ import annotations

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
        out: dict[str, Any] = {
            "time": self._stamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid, uid = request_id_var.get(), user_id_var.get()
        if rid:
            out["request_id"] = rid
        if uid is not None:
            out["user_id"] = uid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(out)


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
    handler.setFormatter(
        JsonFormatter() if choose_format(fmt, stream) == "json" else TextFormatter()
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
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
