"""The middleware list, written once (docs/decisions.md says why this order): log+id → headers → errors → the rest.

The outermost middleware also does the response's way out, which four middlewares of their own
used to do around the error pages: flash cleared, security headers, compression, then the
request id. Written as calls in one place, in that order, the request path stays readable and
every request is spared four coroutine layers (each one resumed at every database wait)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

import psycopg
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict
from psycopg_pool import PoolTimeout, TooManyRequests

from app.errors import Invalid, KeelError, PermissionDenied
from app.ops.logging import log_direct, request_id_var
from app.web import keys
from app.web.auth import PRINCIPAL
from app.web.auth_middleware import login_required, session_actor
from app.web.bearer import CHALLENGE, is_api
from app.web.compression import compress_response
from app.web.connections import body_deadline
from app.web.csrf import csrf_guard
from app.web.flash import clear_shown
from app.web.readonly import read_only
from app.web.render import render
from app.web.requestinfo import client_ip_and_scheme, request_id_from

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("keel.access")
errlog = logging.getLogger("keel.error")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "X-Robots-Tag": "noindex",
}
HSTS = "max-age=63072000; includeSubDomains"
# The Server header names the product, never the versions of Python and aiohttp (a free hint
# to anyone matching a host against published vulnerabilities).
SERVER = "keel"
# aiohttp answers requests its parser refuses (bad header bytes, an oversized line) by itself,
# outside every middleware and signal, with its default Server header: replace that default.
web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
# Path segments that carry secrets never reach the log (REC-6).
_SECRET_PATHS = (
    re.compile(r"^(/reset/)[^/]+"),
    re.compile(r"^(/recover/)[^/]+"),
    re.compile(r"^(/invite/)[^/]+"),
)


_SECRET_PREFIXES = ("/reset/", "/recover/", "/invite/")


def mask_path(path: str) -> str:
    if not path.startswith(_SECRET_PREFIXES):  # most paths: no pattern to try
        return path
    for pattern in _SECRET_PATHS:
        path = pattern.sub(r"\1***", path)
    return path


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (AUDIT-6), client facts, the response's way out (module docstring) and one
    access-log line without the query (OPS-3)."""
    config = request.app[keys.CONFIG]
    rid = request_id_from(request)
    request[keys.REQUEST_ID] = rid
    ip, https = client_ip_and_scheme(request, config.trusted_proxies)
    request[keys.CLIENT_IP], request[keys.IS_HTTPS] = ip, https
    token = request_id_var.set(rid)
    started = time.perf_counter()
    status, size = 500, 0
    deadline = body_deadline(request)  # a body that does not arrive in time closes the connection
    try:
        response = await handler(request)
        # The way out, for error pages too (they are made inside): a page that showed a
        # message clears it, then SEC-2's headers, then compression, outside everything
        # that renders a body.
        clear_shown(request, response)
        if not response.prepared:
            apply_security_headers(request, response)
        compress_response(request, response)
        status = response.status
        size = (
            response.body_length
            if response.prepared
            else len(getattr(response, "body", b"") or b"")
        )
        return response
    finally:
        if deadline is not None:
            deadline.cancel()
        path = mask_path(request.path)
        extra: dict[str, object] = {
            "method": request.method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "bytes": size,
            "client_ip": ip,
        }
        who = request.get(PRINCIPAL)
        if who is not None:
            extra["user_id"] = who.user_id  # the id only: an email is personal data (OPS-3)
        log_direct(log, f"{request.method} {path} {status}", extra)
        request_id_var.reset(token)


# The same headers with their names made case-insensitive once, not on every response.
_SECURITY_HEADERS = CIMultiDict(SECURITY_HEADERS)


def apply_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """SEC-2's headers and the request id, on every response before it is sent: by the
    outermost middleware, or by `on_prepare` for a response a handler streams itself."""
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Server"] = SERVER
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if request.get(keys.IS_HTTPS):
        response.headers["Strict-Transport-Security"] = HSTS
    if keys.REQUEST_ID in request:
        response.headers["X-Request-ID"] = request[keys.REQUEST_ID]


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the same headers on responses a handler streams itself (exports),
    which the middleware sees only after they were sent."""
    apply_security_headers(request, response)


def _error_page(
    request: web.Request, status: int, title: str, message: str, **extra: object
) -> web.Response:
    template = {403: "403.html", 404: "404.html"}.get(status, "error.html")
    wants_json = (
        request.headers.get("Accept", "").startswith("application/json")
        or request.query.get("format") in ("json", "jsonl")
        or request.path in ("/healthz", "/readyz")
        or is_api(request.path)  # the JSON API answers in JSON, whatever was asked
    )
    if wants_json:
        body: dict[str, object] = {
            "error": title,
            "message": message,
            "problem": message,
            "request_id": request.get(keys.REQUEST_ID, ""),
        }
        for name in ("why", "fix"):
            if extra.get(name):
                body[name] = extra[name]
        if extra.get("missing"):  # AUTHZ-8: say what is missing, to scripts too
            body["missing"] = extra["missing"]
        fields = extra.get("fields")
        if isinstance(fields, dict) and fields:
            # field → messages, the same messages the form shows next to each field
            body["fields"] = {k: [v] if isinstance(v, str) else v for k, v in fields.items()}
        response = web.json_response(body, status=status)
        if status == 401:
            response.headers["WWW-Authenticate"] = CHALLENGE
        return response
    ctx = {"status": status, "title": title, "message": message, **extra}
    try:
        return render(request, [template, "error.html"], ctx, status=status)
    except Exception:
        # The error page itself failed (a broken override template): still answer, plainly.
        errlog.exception("error page %s failed to render", template)
        rid = request.get(keys.REQUEST_ID, "")
        return web.Response(text=f"{status} {title}\n{message}\nRequest id: {rid}\n", status=status)


_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Page not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Request too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One place maps domain errors and HTTP errors to pages; unknown errors become a 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            return web.Response(status=exc.status, headers=exc.headers)
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
        response = _error_page(request, exc.status, _TITLES.get(exc.status, exc.reason), message)
        for name in ("Retry-After", "Allow"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except PermissionDenied as exc:
        return _error_page(
            request, 403, _TITLES[403], exc.problem, missing=exc.missing, why=exc.why, fix=exc.fix
        )
    except KeelError as exc:
        fields = exc.fields if isinstance(exc, Invalid) else None
        return _error_page(
            request, exc.http_status, _TITLES.get(exc.http_status, "Error"), exc.problem,
            why=exc.why, fix=exc.fix, fields=fields,
        )  # fmt: skip
    except HttpProcessingError:
        # aiohttp's parser refused a malformed body (a control character in a multipart part
        # header, a broken chunk) while a form was read: the client's fault, not a crash.
        return _error_page(
            request, 400, _TITLES[400], "The form data could not be read. Send the form again."
        )
    except (PoolTimeout, TooManyRequests):
        # DB-6: shed load instead of queueing forever, whether the wait for a connection
        # timed out or the queue of waiters was already full (the pool's max_waiting).
        response = _error_page(
            request, 503, _TITLES[503], "The server is busy. Try again in a moment."
        )
        response.headers["Retry-After"] = "2"
        return response
    except ConnectionResetError:
        # The client went away, or body_deadline closed a connection whose body did not come,
        # while the body was being read: nobody is left to answer, and nothing is broken.
        return web.Response(status=408, text="The request body did not arrive.")
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        # A table or column Keel read from the catalog at start-up is gone: it was changed
        # behind the running server (a migration run by hand, a dropped column). Retrying will
        # not help; the operator has to look, so the page says what to do.
        first = str(exc).strip().splitlines()[0]
        errlog.warning(
            "schema changed under %s %s: %s", request.method, mask_path(request.path), first
        )
        return _error_page(
            request, 503, _TITLES[503],
            "A table this page reads has changed since the server started.",
            why="Keel reads the tables' columns when it starts; one of them is no longer there.",
            fix="run `keel doctor` to see what differs (a migration not applied, a column"
            " dropped), then `keel migrate` or restart Keel",
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        # The connection broke under a request in flight (PostgreSQL stopped, restarted or
        # failed over; a network cut) or a query ran past statement_timeout: the same 503 the
        # requests after it get from the pool, not a 500. One line, no traceback: the cause is
        # outside Keel and the operator sees it in PostgreSQL's log.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        errlog.warning(
            "database error on %s %s: %s", request.method, mask_path(request.path), first
        )
        response = _error_page(
            request, 503, _TITLES[503], "The database is not answering. Try again in a moment."
        )
        response.headers["Retry-After"] = "5"
        return response
    except Exception:
        errlog.exception("unhandled error on %s %s", request.method, mask_path(request.path))
        return _error_page(
            request,
            500,
            _TITLES[500],
            "The error was logged. Quote the request id when you report it.",
        )


MIDDLEWARES = [
    request_log,  # and the response's way out: flash cleared, security headers, compression
    error_pages,
    csrf_guard,  # SEC-1
    session_actor,  # SESS-3, AUTHZ-5
    login_required,  # deny by default, LOGIN-7, AUTHZ-2
    read_only,
]
