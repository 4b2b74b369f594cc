"""Keel's own resources on the admin engine: users, groups and the audit log (app/admin/hooks.py)."""

from __future__ import annotations

from app.admin.builtin.audit import AUDIT
from app.admin.builtin.groups import GROUPS
from app.admin.builtin.users import USERS
from app.admin.hooks import Entity

ENTITIES: tuple[Entity, ...] = (USERS, GROUPS, AUDIT)  # in sidebar order
