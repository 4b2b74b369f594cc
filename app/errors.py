"""Error types that services raise and the web and CLI layers render (CLI-1)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KeelError(Exception):
    """An expected failure, explained in four parts: Problem / Why / Fix / Retry."""

    problem: str
    why: str = ""
    fix: str = ""
    retry: str = ""
    exit_code: int = 1
    http_status: int = 500

    def __post_init__(self) -> None:
        super().__init__(self.problem)

    def __str__(self) -> str:
        return self.problem

    def render(self) -> str:
        lines = [f"Problem: {self.problem}"]
        if self.why:
            lines.append(f"Why: {self.why}")
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        if self.retry:
            lines.append(f"Retry: {self.retry}")
        return "\n".join(lines)


class UsageError(KeelError):
    """Bad command-line usage or a refused confirmation (exit code 2)."""

    def __init__(self, problem: str, why: str = "", fix: str = "", retry: str = "") -> None:
        super().__init__(problem, why, fix, retry, exit_code=2, http_status=400)


class ConfigError(KeelError):
    """An invalid setting (CONF-5): one line naming the key, the problem and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        super().__init__(
            f"setting '{key}': {problem}",
            why="Keel validates every setting at start so a bad value cannot surface later.",
            fix=fix,
            exit_code=2,
            http_status=500,
        )

    def one_line(self) -> str:
        return f"Configuration error: {self.problem}. Fix: {self.fix}"


class DatabaseUnavailable(KeelError):
    """The database cannot be reached or does not exist."""

    def __init__(self, problem: str, why: str, fix: str, retry: str = "") -> None:
        super().__init__(problem, why, fix, retry or "run the command again", 1, 503)


class NotFound(KeelError):
    def __init__(self, problem: str = "not found", why: str = "", fix: str = "") -> None:
        super().__init__(problem, why, fix, exit_code=1, http_status=404)


class PermissionDenied(KeelError):
    """Refused by the authority layer; `missing` names the permission or role (AUTHZ-8)."""

    def __init__(self, problem: str, missing: str = "", why: str = "", fix: str = "") -> None:
        self.missing = missing
        super().__init__(problem, why, fix, exit_code=1, http_status=403)


class Unauthenticated(KeelError):
    """No valid credentials for a request that needs them (an API call without a good token)."""

    def __init__(self, problem: str, why: str = "", fix: str = "") -> None:
        super().__init__(problem, why, fix, exit_code=1, http_status=401)


class Conflict(KeelError):
    def __init__(self, problem: str, why: str = "", fix: str = "") -> None:
        super().__init__(problem, why, fix, exit_code=1, http_status=409)


class Invalid(KeelError):
    """Input that fails validation; `fields` maps field names to messages."""

    def __init__(
        self, problem: str, fields: dict[str, str] | None = None, why: str = "", fix: str = ""
    ) -> None:
        self.fields = fields or {}
        super().__init__(problem, why, fix, exit_code=2, http_status=400)
