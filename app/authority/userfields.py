"""Checking what people type about users: emails and profile fields (AUTHZ-1, SEC-3)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from app.errors import Invalid

PROFILE_FIELDS = ("full_name", "display_name", "job_title", "locale", "timezone")
_LIMITS = {"full_name": 200, "display_name": 100, "job_title": 200, "locale": 35, "timezone": 64}
_LABELS = {
    "full_name": "Full name",
    "display_name": "Display name",
    "job_title": "Job title",
    "locale": "Locale",
    "timezone": "Time zone",
}
# RFC 5322 atext for the local part (no quotes, no <>), LDH labels with a dot for the domain.
_EMAIL = re.compile(
    r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8}){0,3}$")
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")


def _shown(value: str, limit: int = 60) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in value)
    return clean[:limit] + ("…" if len(clean) > limit else "")


def normalise_email(raw: object) -> str:
    """Trimmed, lowercase, and shaped like an address, or Invalid saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(
            "an email address is required", fields={"email": "required"}, fix="give --email"
        )
    address = raw.strip().lower()
    if len(address) > 254 or not _EMAIL.match(address):
        raise Invalid(
            f"{_shown(address)!r} is not an email address",
            fields={"email": "like name@example.com"},
            fix="write it like name@example.com",
        )
    return address


def clean_profile(values: Mapping[str, object], *, partial: bool = False) -> dict[str, str]:
    """Profile fields checked against their limits; unknown names are refused (SEC-3)."""
    out: dict[str, str] = {}
    for name, raw in values.items():
        if name == "email" and partial:
            continue
        if name not in PROFILE_FIELDS:
            raise _bad(str(name), f"{_shown(str(name))!r} is not a profile field",
                       f"use one of {', '.join(PROFILE_FIELDS)}")  # fmt: skip
        label = _LABELS[name]
        if not isinstance(raw, str):
            raise _bad(name, f"{label} must be text", "send it as text")
        value = raw.strip()
        if len(value) > _LIMITS[name]:
            raise _bad(name, f"{label} is too long ({len(value)} characters; at most "
                       f"{_LIMITS[name]})", f"shorten it to {_LIMITS[name]} characters")  # fmt: skip
        if any(not c.isprintable() for c in value):
            raise _bad(name, f"{label} contains a control character",
                       "remove invisible characters, e.g. by typing it again")  # fmt: skip
        if name == "locale" and not _LOCALE.match(value):
            raise _bad(name, f"{_shown(value)!r} is not a locale", "write it like en or pt-BR")
        if name == "timezone" and not _valid_timezone(value):
            raise _bad(name, f"{_shown(value)!r} is not a time zone",
                       "write an IANA name like UTC or Europe/Paris")  # fmt: skip
        out[name] = value
    return out


def _bad(name: str, problem: str, fix: str) -> Invalid:
    return Invalid(problem, fields={name: problem}, fix=fix)


def _valid_timezone(name: str) -> bool:
    if not _TIMEZONE.match(name):  # also keeps "../" away from the tz database lookup
        return False
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
