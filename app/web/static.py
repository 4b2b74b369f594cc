"""Static assets held in memory with content-hashed URLs (the one stylesheet and script)."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    digest: str


class StaticFiles:
    """Loaded once at start: a handful of small files, so memory beats disk lookups."""

    def __init__(self) -> None:
        self.assets: dict[str, Asset] = {}
        root = resources.files("app.web") / "static"
        if root.is_dir():
            for entry in root.iterdir():
                if entry.is_file() and not entry.name.startswith("."):
                    body = entry.read_bytes()
                    ctype = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                    self.assets[entry.name] = Asset(
                        body, ctype, hashlib.sha256(body).hexdigest()[:12]
                    )

    def url(self, name: str) -> str:
        asset = self.assets.get(name)
        return f"/static/{name}?v={asset.digest}" if asset else f"/static/{name}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        etag = f'"{asset.digest}"'
        cache = IMMUTABLE if request.query.get("v") == asset.digest else "public, max-age=300"
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": cache})
        charset = (
            "utf-8"
            if asset.content_type.startswith("text/")
            or asset.content_type.endswith(("javascript", "svg+xml"))
            else None
        )
        return web.Response(
            body=asset.body,
            content_type=asset.content_type,
            charset=charset,
            headers={"ETag": etag, "Cache-Control": cache},
        )
