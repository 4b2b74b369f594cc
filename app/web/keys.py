"""Typed keys for application and request state (no string-keyed state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from app.config import Config
from app.db.pool import KeelPool

if TYPE_CHECKING:
    from app.web.render import Renderer
    from app.web.static import StaticFiles

CONFIG = web.AppKey("config", Config)
POOL = web.AppKey("pool", KeelPool)
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer")
STATIC: web.AppKey[StaticFiles] = web.AppKey("static")
SCHEMA_VERSION = web.AppKey("schema_version", str)

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)
IS_HTTPS = web.RequestKey("is_https", bool)
# A streamed file upload: the multipart reader, positioned after the CSRF token (csrf.py).
UPLOAD_READER = web.RequestKey("upload_reader", aiohttp.MultipartReader)
