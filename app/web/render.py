"""Jinja rendering: built-in templates, overridable from `template_dir` (UI-4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
from aiohttp import web

from app import __version__
from app.config import Config
from app.web import keys


class Renderer:
    def __init__(self, config: Config, static_url: Callable[[str], str]) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if config.template_dir:
            loaders.append(jinja2.FileSystemLoader(config.template_dir))
        loaders.append(jinja2.PackageLoader("app.web", "templates"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            site_name=config.site_name,
            version=__version__,
            static_url=static_url,
            read_only=config.read_only,
        )
        self.context_hooks: list[Callable[[web.Request], dict[str, Any]]] = []

    def page_context(self, request: web.Request) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "request_id": request.get(keys.REQUEST_ID, ""),
            "insecure_transport": not request.get(keys.IS_HTTPS, False),
            "user": None,
            "csrf_token": None,
            "nav": [],
            "flashes": [],
            "breadcrumbs": [],
        }
        for hook in self.context_hooks:
            ctx.update(hook(request))
        return ctx

    def render_text(self, names: str | list[str], context: dict[str, Any]) -> str:
        return self.env.select_template([names] if isinstance(names, str) else names).render(
            context
        )

    def response(
        self,
        request: web.Request,
        names: str | list[str],
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        ctx = self.page_context(request)
        ctx.update(context or {})
        return web.Response(
            text=self.render_text(names, ctx),
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers=headers,
        )


def render(
    request: web.Request,
    names: str | list[str],
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return request.app[keys.RENDERER].response(
        request, names, context, status=status, headers=headers
    )
