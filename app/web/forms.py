"""The one form reader: the POSTed form, ids in paths, and allow-list parsing of fields (SEC-3).

Every admin page reads its input here: the pages over the company's tables and the users,
groups and audit pages alike."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from app.errors import Invalid, NotFound

# Ids in paths and forms are positive bigints written plainly; anything else is not a row.
_ID = re.compile(r"[1-9][0-9]{0,17}")
# C0 and C1 controls, DEL, lone surrogates and bidi overrides (which make text read other than
# it is stored, "Trojan Source") never belong in a name, email or reason (SEC-3).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_CONTROL_MULTILINE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
REASON_MIN = 8  # REC-5: every administrator-driven action carries a reason of 8+ characters
REASON_MAX = 500


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The POSTed form; an undecodable body is a 400, an oversized one a 413, a file (no
    admin form takes one) a 400 (SEC-3)."""
    try:
        data = await request.post()
    except web.HTTPException:
        raise  # 413 from aiohttp's client_max_size, rendered by the error middleware
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(
            "the form could not be read",
            why=f"the request body is not a valid form ({type(exc).__name__})",
            fix="submit the form from the page again",
        ) from None
    if any(not isinstance(v, str) for v in data.values()):
        raise Invalid(
            "every field of this form must be text: file uploads are not accepted here",
            fix="submit the form from the page, without a file",
        )
    return data


def path_id(request: web.Request, name: str = "id") -> int:
    """A row id from the URL; anything that is not one cannot name a row, so 404."""
    raw = request.match_info.get(name, "")
    if not _ID.fullmatch(raw):
        raise NotFound("there is no such page", fix="check the address or go back to the list")
    return int(raw)


def raw(form: Mapping[str, Any], name: str, default: str = "") -> str:
    """A submitted value to show again in a re-rendered form (escaped by the template)."""
    value = form.get(name, default)
    return value[:1000] if isinstance(value, str) else default


def form_id(form: Mapping[str, Any], name: str, label: str) -> int:
    raw = form.get(name)
    if not isinstance(raw, str) or not _ID.fullmatch(raw.strip()):
        raise Invalid(f"{label} is missing or not a number", fields={name: "a positive number"})
    return int(raw.strip())


def text(
    form: Mapping[str, Any],
    name: str,
    label: str,
    *,
    max_len: int,
    required: bool = False,
    multiline: bool = False,
) -> str:
    """A trimmed text field: strings only, bounded, no control characters (SEC-3)."""
    raw = form.get(name, "")
    if not isinstance(raw, str):
        raise Invalid(f"{label} must be text", fields={name: "text, not a file"})
    value = raw.strip()
    if required and not value:
        raise Invalid(f"{label} is required", fields={name: "required"})
    if len(value) > max_len:
        raise Invalid(
            f"{label} is too long ({len(value)} characters; at most {max_len})",
            fields={name: f"at most {max_len} characters"},
        )
    bad = (_CONTROL_MULTILINE if multiline else _CONTROL).search(value)
    if bad:
        raise Invalid(
            f"{label} contains a control character (U+{ord(bad.group()):04X})",
            fields={name: "no control characters"},
            fix="remove invisible characters, for example by typing the value again",
        )
    return value


def email(form: Mapping[str, Any], name: str = "email", label: str = "Email") -> str:
    value = text(form, name, label, max_len=320, required=True).lower()
    if not _EMAIL.fullmatch(value):
        raise Invalid(f"{label} is not an email address", fields={name: "like name@example.com"})
    return value


def reason(form: Mapping[str, Any]) -> str:
    """REC-5: the reason is stored in the audit event, so it must say something."""
    value = text(form, "reason", "The reason", max_len=REASON_MAX, required=True, multiline=True)
    if len(value) < REASON_MIN:
        raise Invalid(
            f"the reason must be at least {REASON_MIN} characters",
            fields={"reason": f"at least {REASON_MIN} characters"},
            fix="say why, in a few words: it is kept in the audit log",
        )
    return value


def choice(form: Mapping[str, Any], name: str, label: str, allowed: Iterable[str]) -> str:
    raw = form.get(name, "")
    options = list(allowed)
    if not isinstance(raw, str) or raw not in options:
        raise Invalid(
            f"{label} must be one of: {', '.join(options)}",
            fields={name: "pick one of the offered values"},
        )
    return raw


def boolean(form: Mapping[str, Any], name: str) -> bool:
    """A checkbox: absent means unchecked; only the values a browser sends are accepted."""
    raw = form.get(name)
    if raw is None:
        return False
    if raw in ("on", "1", "true", "yes"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise Invalid(f"{name} must be a checkbox value", fields={name: "on or absent"})


def many(
    form: MultiDict[Any] | MultiDictProxy[Any], name: str, label: str, allowed: Iterable[str]
) -> list[str]:
    """Several checked values, each from the allow-list; duplicates collapse."""
    options = set(allowed)
    values: list[str] = []
    for raw in form.getall(name, []):
        if not isinstance(raw, str) or raw not in options:
            shown = raw[:40] if isinstance(raw, str) else "a file"
            raise Invalid(
                f"{label}: {shown!r} is not one of the offered values",
                fields={name: "pick from the list"},
            )
        if raw not in values:
            values.append(raw)
    return values


def query_text(request: web.Request, name: str, label: str, max_len: int = 200) -> str:
    """A GET parameter, validated like a form field (SEC-3)."""
    return text(request.query, name, label, max_len=max_len)
