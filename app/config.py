"""Settings: one table drives parsing, validation, help, the reference docs and doctor (CONF)."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/keel/keel.toml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(key: str, raw: object) -> float:
    """`500ms`, `5s`, `30m`, `12h`, `7d` or a number of seconds → seconds."""
    if isinstance(raw, bool):
        raise ConfigError(key, f"{raw!r} is not a duration", "write e.g. 30s, 15m, 12h or 7d")
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        m = _DURATION.match(str(raw))
        if not m:
            raise ConfigError(
                key, f"{str(raw)[:40]!r} is not a duration", "write e.g. 30s, 15m, 12h or 7d"
            )
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(key, "must be greater than zero", "write e.g. 30s, 15m, 12h or 7d")
    return seconds


def _parse_int(key: str, raw: object, lo: int, hi: int) -> int:
    if isinstance(raw, bool):
        raise ConfigError(key, f"{raw!r} is not a whole number", f"use a number from {lo} to {hi}")
    try:
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except ValueError:
        raise ConfigError(
            key, f"{str(raw)[:40]!r} is not a whole number", f"use a number from {lo} to {hi}"
        ) from None
    if not lo <= value <= hi:
        raise ConfigError(key, f"{value} is out of range", f"use a number from {lo} to {hi}")
    return value


def _parse_bool(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(key, f"{str(raw)[:40]!r} is not a boolean", "use true or false")


def _parse_list(raw: object) -> list[str]:
    if isinstance(raw, list):
        return [str(x).strip() for x in raw if str(x).strip()]
    return [x.strip() for x in str(raw).split(",") if x.strip()]


def _parse_cidrs(key: str, raw: object) -> tuple[str, ...]:
    out = []
    for item in _parse_list(raw):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                key, f"{item[:60]!r} is not an IP network", "use CIDRs like 10.0.0.0/8 or ::1/128"
            ) from None
    return tuple(out)


def parse_listen(key: str, raw: object) -> str:
    text = str(raw).strip()
    if text.startswith("unix:"):
        if not text[5:].startswith("/"):
            raise ConfigError(
                key, "a unix socket needs an absolute path", "write unix:/run/keel/http.sock"
            )
        return text
    m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})", text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ConfigError(
            key,
            f"{text[:60]!r} is not an address",
            "write HOST:PORT (127.0.0.1:8000) or unix:/path",
        )
    return text


def _parse_url(key: str, raw: object, schemes: tuple[str, ...]) -> str:
    text = str(raw).strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            key,
            f"{redact_url(text)[:80]!r} is not a {'/'.join(schemes)} URL",
            f"write a URL starting with {schemes[0]}://",
        )
    return text


# The role ladder of app/authority/principal.py (tests/test_config.py checks they agree); the
# configuration is read before, and without, the authority modules.
_ROLE_NAMES = ("user", "staff", "supervisor", "administrator", "developer")


def parse_mfa_policy(key: str, raw: object) -> str:
    """`off`, `optional`, `required` or `required:<role>,<role>`, normalised."""
    text = str(raw).strip().lower().replace(" ", "")
    fix = "write off, optional, required, or required:<role>,<role> such as required:administrator"
    if text in ("off", "disabled"):
        return "off"
    if text in ("optional", "required"):
        return text
    if text.startswith("required:"):
        names = [r for r in text[len("required:") :].split(",") if r]
        unknown = [r for r in names if r not in _ROLE_NAMES]
        if unknown:
            raise ConfigError(
                key,
                f"{', '.join(unknown)[:60]!r} is not a role",
                f"use roles from: {', '.join(_ROLE_NAMES)}",
            )
        if not names:
            raise ConfigError(key, "no role is listed after required:", fix)
        return "required:" + ",".join(sorted(set(names), key=_ROLE_NAMES.index))
    raise ConfigError(key, f"{str(raw)[:40]!r} is not a policy", fix)


def _choice(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def parse(key: str, raw: object) -> str:
        text = str(raw).strip().lower()
        if text not in choices:
            raise ConfigError(
                key, f"{str(raw)[:40]!r} is not allowed", f"use one of {', '.join(choices)}"
            )
        return text

    return parse


def _text(maxlen: int) -> Callable[[str, object], str]:
    def parse(key: str, raw: object) -> str:
        text = str(raw)
        if len(text) > maxlen or any(ord(c) < 32 for c in text):
            raise ConfigError(
                key,
                "too long or contains control characters",
                f"use at most {maxlen} printable characters",
            )
        return text

    return parse


def _parse_colour(key: str, raw: object) -> str:
    text = str(raw).strip()
    if not text:
        return ""
    from app.theme import ColourError, parse_hex

    try:
        return parse_hex(text)
    except ColourError:
        raise ConfigError(
            key,
            f"{text[:40]!r} is not a hex colour",
            'write six hex digits like "#0f766e" (quoted in TOML), or leave it empty',
        ) from None


MAX_AUTO_WORKERS = 8


def _parse_workers(key: str, raw: object) -> int:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return 0
    return _parse_int(key, raw, 0, 64)


def worker_count(config: Config) -> int:
    """The processes `serve` runs: the setting, or one per usable CPU (at most 8) when 0."""
    if config.workers:
        return config.workers
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_AUTO_WORKERS))


def _secret_key(key: str, raw: object) -> str:
    return str(raw).strip()


def _secret_keys(key: str, raw: object) -> tuple[str, ...]:
    """A TOML array, or text with one key per line (a credential file) or comma-separated."""
    items = raw if isinstance(raw, list) else re.split(r"[\s,]+", str(raw))
    ring = tuple(k for k in (str(x).strip() for x in items) if k)
    if len(set(ring)) != len(ring):
        raise ConfigError(key, "the same key is listed twice", "list each key once")
    return ring


def _range(lo: int, hi: int) -> Callable[[str, object], int]:
    return lambda key, raw: _parse_int(key, raw, lo, hi)


def _duration_between(lo: float, hi: float, shown: str) -> Callable[[str, object], float]:
    def parse(key: str, raw: object) -> float:
        seconds = parse_duration(key, raw)
        if not lo <= seconds <= hi:
            raise ConfigError(key, f"{seconds:g}s is out of range", f"use a duration in {shown}")
        return seconds

    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str, object], Any]
    default: Any
    help: str
    secret: bool = False
    example: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        lambda k, v: _parse_url(k, v, ("postgresql", "postgres")),
        "",
        "PostgreSQL connection URL. Also read from DATABASE_URL.",
        secret=True,
        example="postgresql://keel@db.internal/keel",
    ),
    Setting(
        "listen",
        parse_listen,
        "127.0.0.1:8000",
        "Where `serve` listens: HOST:PORT or unix:/path. Ignored under socket activation (LISTEN_FDS).",
        example="unix:/run/keel/http.sock",
    ),
    Setting(
        "public_url",
        lambda k, v: _parse_url(k, v, ("https", "http")),
        "",
        "The external URL; the only source of absolute links in mail. Required for recovery mail.",
        example="https://ops.example.com",
    ),
    Setting(
        "site_name",
        _text(80),
        "Keel",
        "Name shown in the page title and mail.",
        example="Acme Operations",
    ),
    Setting(
        "secret_key",
        _secret_key,
        "",
        "32 random bytes, URL-safe base64. Keys the audit chain HMAC and second-factor "
        "encryption. Generate: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.",
        secret=True,
    ),
    Setting(
        "secret_keys",
        _secret_keys,
        (),
        "The key ring, for rotating `secret_key`: the first key signs, every key verifies "
        "(sessions' form tokens, page links, messages, mailed links, the audit chain). Set "
        "either this or `secret_key`, not both. As a file (`file:` or the `secret_keys` "
        "credential): one key per line. `keel secret rotate` prints the steps.",
        secret=True,
    ),
    Setting(
        "trusted_proxies",
        _parse_cidrs,
        (),
        "CIDRs whose X-Forwarded-For / X-Forwarded-Proto headers are believed.",
        example='["127.0.0.1/32"]',
    ),
    Setting("pool_min", _range(0, 100), 2, "Connections the pool keeps open."),
    Setting("pool_max", _range(1, 500), 10, "Most connections the pool opens."),
    Setting(
        "pool_timeout",
        parse_duration,
        5.0,
        "How long a request waits for a connection before answering 503.",
        example="5s",
    ),
    Setting(
        "statement_timeout",
        parse_duration,
        5.0,
        "statement_timeout for request queries.",
        example="5s",
    ),
    Setting(
        "idle_in_transaction_timeout",
        parse_duration,
        10.0,
        "idle_in_transaction_session_timeout for pooled connections.",
        example="10s",
    ),
    Setting(
        "session_idle",
        parse_duration,
        1800.0,
        "A session ends after this long idle.",
        example="30m",
    ),
    Setting(
        "session_absolute",
        parse_duration,
        43200.0,
        "A session ends this long after sign-in.",
        example="12h",
    ),
    Setting(
        "reauth_window", parse_duration, 900.0, "How long a re-authentication lasts.", example="15m"
    ),
    Setting("password_min_length", _range(8, 128), 12, "Minimum password length."),
    Setting(
        "login_lock_failures",
        _range(3, 100),
        5,
        "Wrong passwords for one account within login_lock_window that lock it.",
    ),
    Setting(
        "login_lock_window",
        # The sweeper keeps rate events an hour (ratelimit.LONGEST_WINDOW).
        _duration_between(60, 3600, "1m to 1h"),
        600.0,
        "The sliding window in which login_lock_failures count.",
        example="10m",
    ),
    Setting(
        "login_lock_duration",
        _duration_between(60, 86400, "1m to 24h"),
        900.0,
        "How long the automatic lock lasts.",
        example="15m",
    ),
    Setting(
        "login_ip_limit",
        _range(5, 1_000_000),
        30,
        "Sign-in attempts per minute from one client address, across accounts, before 429.",
    ),
    Setting(
        "mfa_policy",
        parse_mfa_policy,
        "optional",
        "Two-step sign-in: off (hidden), optional (each user chooses), required (everyone), or"
        " required:<role>,<role> (required for those roles, e.g. required:administrator,developer).",
        example="required:administrator,developer",
    ),
    Setting(
        "mfa_grace_period",
        parse_duration,
        604800.0,
        "How long a user whom mfa_policy requires to set up two-step sign-in may still sign in"
        " with the password alone (held on the set-up page), counted from that first sign-in.",
        example="7d",
    ),
    Setting(
        "mfa_pending_lifetime",
        parse_duration,
        300.0,
        "How long a sign-in waits for the two-step code after the password before it ends.",
        example="5m",
    ),
    Setting(
        "invitation_ttl",
        _duration_between(3600, 30 * 86400, "1h to 30d"),
        259200.0,
        "How long an invitation link works after it is sent (or sent again).",
        example="3d",
    ),
    Setting(
        "read_only", _parse_bool, False, "Refuse all writes except sign-in and own-account pages."
    ),
    Setting(
        "log_format",
        _choice(("auto", "json", "text")),
        "auto",
        "json under systemd, text on a terminal when auto.",
    ),
    Setting(
        "log_level", _choice(("debug", "info", "warning", "error")), "info", "Lowest level logged."
    ),
    Setting(
        "shutdown_timeout",
        parse_duration,
        30.0,
        "On SIGTERM, how long in-flight requests may take to finish.",
        example="30s",
    ),
    Setting(
        "workers",
        _parse_workers,
        0,
        "Processes that serve requests, all accepting on the one listening socket, under one "
        "supervisor. 0: one per CPU this process may use, at most 8. 1: a single process, no "
        "supervisor.",
        example="4",
    ),
    Setting(
        "pgbouncer",
        _parse_bool,
        False,
        "PostgreSQL is reached through PgBouncer in transaction pooling mode: no prepared "
        "statements, no session state kept between transactions. Run `keel migrate` directly "
        "against PostgreSQL.",
    ),
    Setting(
        "http_header_timeout",
        _duration_between(1, 300, "1s to 5m"),
        10.0,
        "How long a new connection may take to send a complete request head; then it is closed.",
        example="10s",
    ),
    Setting(
        "http_body_timeout",
        _duration_between(1, 3600, "1s to 1h"),
        60.0,
        "How long a request body may take to arrive once its head has; then the connection is closed.",
        example="60s",
    ),
    Setting(
        "http_keepalive_timeout",
        _duration_between(1, 3600, "1s to 1h"),
        75.0,
        "How long a kept-alive connection may stay idle (or hold a half-sent request) between "
        "requests. Keep it above the proxy's upstream keep-alive (nginx: 60s).",
        example="75s",
    ),
    Setting(
        "http_max_connections",
        _range(16, 1_000_000),
        1000,
        "Most open client connections per worker process; more are answered 503 and closed. "
        "Lowered at start to fit the process's file descriptor limit.",
    ),
    Setting(
        "http_max_connections_per_client",
        _range(1, 1_000_000),
        100,
        "Most open connections from one client address per worker process (503 above). Trusted "
        "proxies and the unix socket are exempt.",
    ),
    Setting(
        "brand_color",
        _parse_colour,
        "",
        "Brand colour (#rrggbb) the admin's colours are computed from at start, contrast "
        "checked (see `keel theme generate`). Empty: Keel's blue.",
        example='"#0f766e"',
    ),
    Setting(
        "template_dir",
        _text(4096),
        "",
        "A directory whose templates override the built-in ones (per page or per resource).",
    ),
    Setting(
        "site_dir",
        _text(4096),
        "",
        "Development: serve the site project in this directory (relative to the configuration "
        "file) instead of the one built into the executable. Empty: the built-in site, if any.",
        example=".",
    ),
    Setting(
        "smtp_host", _text(255), "", "SMTP server; empty means mail is not sent (demo prints it)."
    ),
    Setting("smtp_port", _range(1, 65535), 587, "SMTP port."),
    Setting("smtp_username", _text(255), "", "SMTP user name."),
    Setting("smtp_password", _secret_key, "", "SMTP password.", secret=True),
    Setting(
        "smtp_tls", _choice(("starttls", "tls", "none")), "starttls", "SMTP transport security."
    ),
    Setting(
        "mail_from", _text(255), "", "The From address of mail.", example="Keel <keel@example.com>"
    ),
    Setting(
        "metrics_allow",
        _parse_cidrs,
        ("127.0.0.1/32", "::1/128"),
        "Addresses allowed to read /metrics.",
    ),
    Setting(
        "max_body_size",
        _range(1024, 1 << 30),
        1 << 20,
        "Largest accepted request body in bytes (413 above).",
    ),
    Setting(
        "import_max_size",
        _range(1024, 1 << 31),
        20 << 20,
        "Largest CSV file the admin's import page accepts, in bytes; the upload is streamed to "
        "a temporary file and refused as soon as it passes this size.",
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
SECRET_FILES = ("secret_key", "secret_keys", "database_url", "smtp_password")


@dataclass(frozen=True)
class Config:
    database_url: str = ""
    listen: str = "127.0.0.1:8000"
    public_url: str = ""
    site_name: str = "Keel"
    # The signing key: `secret_key`, or the first of `secret_keys` when a ring is set.
    secret_key: str = ""
    secret_keys: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    pool_min: int = 2
    pool_max: int = 10
    pool_timeout: float = 5.0
    statement_timeout: float = 5.0
    idle_in_transaction_timeout: float = 10.0
    session_idle: float = 1800.0
    session_absolute: float = 43200.0
    reauth_window: float = 900.0
    password_min_length: int = 12
    login_lock_failures: int = 5
    login_lock_window: float = 600.0
    login_lock_duration: float = 900.0
    login_ip_limit: int = 30
    mfa_policy: str = "optional"
    mfa_grace_period: float = 604800.0
    mfa_pending_lifetime: float = 300.0
    invitation_ttl: float = 259200.0
    read_only: bool = False
    log_format: str = "auto"
    log_level: str = "info"
    shutdown_timeout: float = 30.0
    workers: int = 0
    pgbouncer: bool = False
    http_header_timeout: float = 10.0
    http_body_timeout: float = 60.0
    http_keepalive_timeout: float = 75.0
    http_max_connections: int = 1000
    http_max_connections_per_client: int = 100
    brand_color: str = ""
    template_dir: str = ""
    site_dir: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_tls: str = "starttls"
    mail_from: str = ""
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    max_body_size: int = 1 << 20
    import_max_size: int = 20 << 20
    # Where each value came from (default, file, credential, env, flag); not a setting.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    demo: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        # One place decides which key signs: the head of the ring when there is one.
        if self.secret_keys and self.secret_key != self.secret_keys[0]:
            object.__setattr__(self, "secret_key", self.secret_keys[0])

    @property
    def ring(self) -> tuple[str, ...]:
        """Every key that verifies, the signing key first (`secret_key = X` is the ring [X])."""
        return self.secret_keys or ((self.secret_key,) if self.secret_key else ())

    def with_values(self, **values: Any) -> Config:
        return replace(self, **values)

    def redacted(self) -> dict[str, str]:
        """Every setting as display text, secrets masked (CONF-2)."""
        out = {}
        for s in SETTINGS:
            value = getattr(self, s.name)
            if s.name == "database_url":
                out[s.name] = redact_url(value)
            elif s.secret:
                out[s.name] = "***" if value else ""
            elif isinstance(value, tuple):
                out[s.name] = ", ".join(value)
            else:
                out[s.name] = str(value)
        return out


def redact_url(url: str) -> str:
    """postgres://u:secret@h/db → postgres://u:***@h/db; also masks password= in conninfo."""
    if not url:
        return url
    url = re.sub(r"(password=)\S+", r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _read_secret_file(key: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            key, f"cannot read {path}: {exc.strerror}", "check the path and its permissions"
        ) from None


def _resolve(key: str, raw: object) -> object:
    setting = SETTINGS_BY_NAME[key]
    if setting.secret and isinstance(raw, str) and raw.startswith("file:"):
        return _read_secret_file(key, raw[5:])
    return raw


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            "config", f"file {path} does not exist", "check --config or KEEL_CONFIG"
        ) from None
    except OSError as exc:
        raise ConfigError(
            "config", f"cannot read {path}: {exc.strerror}", "check its permissions"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            "config", f"{path} is not valid TOML ({exc})", "fix the syntax at that line"
        ) from None
    unknown = sorted(set(data) - set(SETTINGS_BY_NAME))
    if unknown:
        raise ConfigError(
            unknown[0],
            f"unknown setting in {path}",
            "remove it or correct the spelling (see `keel docs configuration`)",
        )
    return data


def load_config(
    *,
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults → TOML → systemd credentials → environment → flags (CONF-1); validated (CONF-5)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {s.name: "default" for s in SETTINGS}

    path = config_path or env.get("KEEL_CONFIG") or None
    toml_path = (
        Path(path) if path else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    )
    if toml_path is not None:
        for key, value in _load_toml(toml_path).items():
            raw[key], sources[key] = value, f"file {toml_path}"
        # A project's keel.toml says `site_dir = "."`: the project, wherever keel runs from.
        if isinstance(raw.get("site_dir"), str) and raw["site_dir"]:
            raw["site_dir"] = str(toml_path.parent / Path(raw["site_dir"]).expanduser())

    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for key in SECRET_FILES:
            cred = Path(cred_dir) / key
            if cred.is_file():
                raw[key], sources[key] = f"file:{cred}", "credential"

    if env.get("DATABASE_URL"):
        raw["database_url"], sources["database_url"] = env["DATABASE_URL"], "env DATABASE_URL"
    for s in SETTINGS:
        name = f"KEEL_{s.name.upper()}"
        if name in env:
            raw[s.name], sources[s.name] = env[name], f"env {name}"

    for key, value in (flags or {}).items():
        if value is not None:
            raw[key], sources[key] = value, "flag"

    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = SETTINGS_BY_NAME[key].parse(key, _resolve(key, value))
    if values.get("secret_key") and values.get("secret_keys"):
        raise ConfigError(
            "secret_keys",
            f"both secret_key ({sources['secret_key']}) and secret_keys "
            f"({sources['secret_keys']}) are set",
            "keep one: move the secret_key value into secret_keys (first line) and remove "
            "secret_key",
        )
    config = Config(**values, sources=sources)
    if config.pool_min > config.pool_max:
        raise ConfigError(
            "pool_min",
            f"{config.pool_min} is above pool_max {config.pool_max}",
            "make pool_min at most pool_max",
        )
    return config


def secret_key_problem(key: str) -> str | None:
    """Why a secret key is unusable, or None (CONF-3)."""
    import base64
    import binascii

    if not key:
        return "secret_key is not set"
    try:
        decoded = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    except (binascii.Error, ValueError):
        return "secret_key is not URL-safe base64"
    if len(decoded) < 32:
        return f"secret_key decodes to {len(decoded)} bytes; at least 32 are needed"
    return None


def ring_problem(config: Config) -> str | None:
    """Why the key ring is unusable, or None: every key must be a usable secret key."""
    if not config.secret_keys:
        return secret_key_problem(config.secret_key)
    for n, key in enumerate(config.secret_keys, 1):
        problem = secret_key_problem(key)
        if problem:
            return f"secret_keys key {n}: " + problem.removeprefix("secret_key ")
    return None


def config_fields() -> list[str]:
    return [f.name for f in fields(Config) if f.name not in {"sources", "demo"}]


def reference_markdown() -> str:
    """The configuration reference, generated from SETTINGS (docs/configuration.md)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings table by `keel docs --config-reference`; a test keeps it complete.",
        "",
        "Sources, later wins: built-in defaults → TOML file (`--config PATH`, else "
        "`$KEEL_CONFIG`, else `/etc/keel/keel.toml` if present) → systemd credentials "
        "(`$CREDENTIALS_DIRECTORY/<name>` for `secret_key`, `secret_keys`, `database_url`, `smtp_password`) → "
        "environment (`KEEL_<NAME>`; the database also reads `DATABASE_URL`, and `KEEL_DATABASE_URL` "
        "wins over it) → command-line flags.",
        "",
        "Secret settings accept `file:/path`: the value is read from that file. Secrets are "
        "never printed; `keel doctor --settings` shows every value masked, with its source.",
        "",
        "Durations are written `500ms`, `30s`, `15m`, `12h`, `7d`, or a number of seconds. Lists "
        "are TOML arrays, or comma-separated in the environment. An invalid value stops the program "
        "with one line naming the key, the problem and the fix.",
        "",
    ]
    for s in SETTINGS:
        default = s.default
        if isinstance(default, tuple):
            shown = "[" + ", ".join(f'"{d}"' for d in default) + "]"
        elif isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, float):
            shown = f"{default:g} s"
        else:
            shown = repr(default) if isinstance(default, str) else str(default)
        lines += [f"### `{s.name}`", "", s.help, ""]
        lines.append(f"- Default: `{shown}`" + ("  (secret)" if s.secret else ""))
        lines.append(f"- Environment: `KEEL_{s.name.upper()}`")
        if s.example:
            lines.append(f"- Example: `{s.example}`")
        lines.append("")
    return "\n".join(lines)
