"""Static assets held in memory with content-hashed URLs: Keel's stylesheet and script, and the
site's own files (a project's `static/`, served under /static/site/)."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from aiohttp import web

from app.web import compression

IMMUTABLE = "public, max-age=31536000, immutable"
SITE_THEME = "site/theme.css"  # a site project's tokens file, linked on every page when present
BRAND_CSS = "brand.css"  # generated at start from the `brand_color` setting


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    digest: str
    # Compressed once at start, by coding ("gzip", "br"): assets never change while serving.
    encoded: dict[str, bytes] = field(default_factory=dict)


def _asset(name: str, body: bytes) -> Asset:
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    encoded: dict[str, bytes] = {}
    if compression.compressible(ctype) and len(body) >= compression.MIN_SIZE:
        for coding in ("gzip", "br") if compression.BROTLI is not None else ("gzip",):
            packed = compression.encode(body, coding, best=True)
            if len(packed) < len(body):
                encoded[coding] = packed
    return Asset(body, ctype, hashlib.sha256(body).hexdigest()[:12], encoded)


class StaticFiles:
    """Loaded once at start: a handful of small files, so memory beats disk lookups."""

    def __init__(self, site_static: Path | None = None, brand_color: str = "") -> None:
        self.assets: dict[str, Asset] = {}
        root = resources.files("app.web") / "static"
        if root.is_dir():
            for entry in root.iterdir():
                if entry.is_file() and not entry.name.startswith("."):
                    self.assets[entry.name] = _asset(entry.name, entry.read_bytes())
        if site_static is not None:
            # A site's files are few and small too (a logo, a stylesheet); hidden files and
            # anything behind a symlink that leaves the directory are not served.
            top = site_static.resolve()
            for path in sorted(top.rglob("*")):
                rel = path.relative_to(top).as_posix()
                if (
                    path.is_file()
                    and not any(part.startswith(".") for part in rel.split("/"))
                    and path.resolve().is_relative_to(top)
                ):
                    self.assets[f"site/{rel}"] = _asset(rel, path.read_bytes())
        if brand_color:
            # `brand_color`: the theme engine's tokens, computed once here, served like any
            # other stylesheet (a file, not inline styles: the CSP allows only 'self').
            from app.theme import stylesheet

            self.assets[BRAND_CSS] = _asset(BRAND_CSS, stylesheet(brand_color).encode())

    def theme_stylesheets(self) -> list[str]:
        """Linked after keel.css, in this order: the site's `static/theme.css` (written by
        `keel theme generate`), then the `brand_color` stylesheet, so configuration wins."""
        return [self.url(name) for name in (SITE_THEME, BRAND_CSS) if name in self.assets]

    def url(self, name: str) -> str:
        asset = self.assets.get(name)
        return f"/static/{name}?v={asset.digest}" if asset else f"/static/{name}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, request.match_info["name"])

    async def handle_site(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, "site/" + request.match_info["path"])

    def _serve(self, request: web.Request, key: str) -> web.StreamResponse:
        asset = self.assets.get(key)
        if asset is None:
            raise web.HTTPNotFound()
        coding = compression.accepted(request) if asset.encoded else None
        body = asset.encoded.get(coding or "", asset.body)
        coding = coding if body is not asset.body else None
        # Each encoding is its own representation, with its own validator.
        etag = f'"{asset.digest}-{coding}"' if coding else f'"{asset.digest}"'
        cache = IMMUTABLE if request.query.get("v") == asset.digest else "public, max-age=300"
        headers = {"ETag": etag, "Cache-Control": cache}
        if asset.encoded:
            headers["Vary"] = "Accept-Encoding"
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        if coding:
            headers["Content-Encoding"] = coding
        charset = (
            "utf-8"
            if asset.content_type.startswith("text/")
            or asset.content_type.endswith(("javascript", "svg+xml"))
            else None
        )
        return web.Response(
            body=body, content_type=asset.content_type, charset=charset, headers=headers
        )
