"""Typed keys for application and request state (no string-keyed state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from app.authority.login import SecondFactor
from app.authority.mfa import KeyRing, Policy
from app.config import Config

if TYPE_CHECKING:
    from app.web.render import Renderer
    from app.web.static import StaticFiles

CONFIG = web.AppKey("config", Config)
POOL = web.AppKey("pool", AsyncConnectionPool)
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer")
STATIC: web.AppKey[StaticFiles] = web.AppKey("static")
SCHEMA_VERSION = web.AppKey("schema_version", str)
# The second factor: the policy always; the key ring and sign-in settings only when it is on.
MFA_POLICY = web.AppKey("mfa_policy", Policy)
MFA_RING = web.AppKey("mfa_ring", KeyRing)
MFA_SIGN_IN = web.AppKey("mfa_sign_in", SecondFactor)

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)
IS_HTTPS = web.RequestKey("is_https", bool)
