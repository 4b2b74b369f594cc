"""Jinja rendering: built-in templates, overridable from `template_dir` (UI-4)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jinja2
from aiohttp import web

from app import __version__
from app.config import Config
from app.web import keys


class MemoMacros:
    """`_macros.html` with each macro's output memoised by its arguments, as the global `km`.

    A macro imported without context is a pure function of its arguments, and the same few
    calls (a resource's filter fields, its action buttons) recur on every page view; a Jinja
    macro call costs as much as a dozen plain expressions. Calls with an unhashable argument
    (a list) are simply not memoised. Bounded: at most `size` outputs per macro."""

    def __init__(self, env: jinja2.Environment, size: int = 256) -> None:
        self._env = env
        self._size = size

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        macro = getattr(self._env.get_template("_macros.html").module, name)
        memo = lru_cache(maxsize=self._size)(macro)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return memo(*args, **kwargs)
            except TypeError:  # unhashable arguments
                return macro(*args, **kwargs)

        setattr(self, name, call)
        return call


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
            icon=self.icon,
            km=MemoMacros(self.env),
        )
        self.context_hooks: list[Callable[[web.Request], dict[str, Any]]] = []
        # Templates are loaded once (auto_reload=False), so which name of a list exists is
        # decided once too: no TemplateNotFound raised and caught on every request.
        self._chosen: dict[tuple[str, ...], jinja2.Template] = {}
        self._icon = lru_cache(maxsize=256)(self._render_icon)

    def _render_icon(self, name: str, label: str | None, size: str | None) -> Any:
        return self.env.get_template("_macros.html").module.icon(name, label, size)  # type: ignore[attr-defined]

    def icon(self, name: str, label: str | None = None, size: str | None = None) -> Any:
        """`_macros.html`'s `icon` macro, memoised: its output depends only on its arguments,
        and a page draws a dozen or more of them (the chrome, the sidebar)."""
        return self._icon(name, label, size)

    def template(self, names: str | list[str]) -> jinja2.Template:
        key = (names,) if isinstance(names, str) else tuple(names)
        found = self._chosen.get(key)
        if found is None:
            found = self._chosen[key] = self.env.select_template(list(key))
        return found

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
        return self.template(names).render(context)

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
