"""The role ladder (AUTHZ-2) and the signed-in principal that every check receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ROLES: dict[str, int] = {
    "user": 100,
    "staff": 300,
    "supervisor": 600,
    "administrator": 900,
    "developer": 1000,
}
ADMIN_ENTRY_ROLE = "staff"  # staff and up enter the admin
BYPASS_ROLE = "administrator"  # administrators and developers bypass per-resource checks


def rank(role: str) -> int:
    return ROLES[role]


@dataclass(frozen=True)
class Principal:
    """Who is making this request, as loaded fresh from the database for it (AUTHZ-5)."""

    user_id: int
    email: str
    role: str
    display_name: str
    session_id: int | None = None
    trust: str = "authenticated"  # pending | authenticated | elevated | mfa_verified (SESS-6)
    elevated_until: datetime | None = None
    must_change_password: bool = False
    mfa_enabled: bool = False  # the second factor is set up (MFA-1)

    @property
    def rank(self) -> int:
        return ROLES[self.role]

    def at_least(self, role: str) -> bool:
        return self.rank >= ROLES[role]

    @property
    def enters_admin(self) -> bool:
        return self.at_least(ADMIN_ENTRY_ROLE)

    @property
    def bypasses_permissions(self) -> bool:
        return self.at_least(BYPASS_ROLE)
