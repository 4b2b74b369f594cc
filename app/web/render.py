"""Jinja rendering: built-in templates, overridable by the site's templates and `template_dir`."""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from functools import lru_cache
from pathlib import Path
from types import FunctionType, MethodType
from typing import Any, NamedTuple

import jinja2
import jinja2.runtime
from aiohttp import web
from markupsafe import Markup, escape

from app import __version__
from app.admin.values import choice_label, choice_options
from app.authority.principal import Principal
from app.config import Config
from app.sites import Site
from app.web import keys

_PLAIN = frozenset({str, int, type(None)})


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a macro argument: lists become tuples, dicts their pairs, and
    values other than plain str/int/None are keyed with their type (`Markup("a")` and
    `"a"` draw differently; `True == 1 == 1.0`). TypeError when something cannot be frozen."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    # Most lists and dicts hold only plain values, which stand for themselves: one pass to
    # check that is much cheaper than a call per item (a list page freezes ~180 values).
    if kind is tuple or kind is list:
        for v in value:
            if type(v) not in _PLAIN:
                return tuple([_freeze(v) for v in value])
        return tuple(value)
    if isinstance(value, dict):
        for v in value.values():
            if type(v) not in _PLAIN:
                return ("{}", tuple([(k, _freeze(v)) for k, v in value.items()]))  # order is output
        return ("{}", tuple(value.items()))
    return (kind, value) if value.__hash__ is not None else hash(value)


_SIMPLE = frozenset({str, bool, type(None)})


class Nav(list[dict[str, Any]]):
    """A request's sidebar items as `session_actor` keeps them: with `key`, what they hold,
    worked out once when they were built (app/web/auth_middleware.py), which stands for the
    items in a memo key. Two pages whose sidebars hold the same items (every record of one
    resource marks the same entry active) share the key, so they share a chrome and a shape."""

    key: tuple[Any, ...] | None = None


def _nav_key(items: list[dict[str, Any]]) -> Any:
    """`_freeze(items)` for the common case, four times cheaper: when every value is a plain
    str, a bool or None, the pairs themselves are an exact key (no two of those are equal).
    Items kept with their key (`Nav`) are keyed by it, cheaper still."""
    if type(items) is Nav and items.key is not None:
        return items.key
    return items_key(items)


def items_key(items: list[dict[str, Any]]) -> Any:
    """What the items hold, as a key (TypeError when a value cannot be part of one)."""
    for item in items:
        for value in item.values():
            if type(value) not in _SIMPLE:
                return _freeze(items)
    return tuple([tuple(item.items()) for item in items])


# Macros whose arguments never repeat: `csrf` draws this request's masked form token, new on
# every page, so a memo would only fill with outputs never asked for again.
_NOT_MEMOISED = frozenset({"csrf"})


class ChromeUser(NamedTuple):
    """All the chrome (`_chrome.html`) knows of the signed-in user: the account menu shows the
    name, the email and the role, and nothing else of the user may change what it draws."""

    email: str
    role: str
    display_name: str


# Drawn in the kept chrome where this request's form token goes, then replaced by the token.
# Random per process, so no name, email or search text can contain it.
_CSRF_MARK = "keel-csrf-" + secrets.token_hex(16)

# Set by the test suite: every shaped page is also drawn in full, and a difference between the
# two fails the request loudly (`Renderer.shaped_response`).
CHECK_SHAPES = False
# Keel's own templates: a shaped page is drawn only from these. An override may use a value in
# another way than inserting it (cut it, count it, branch on it), which a hole cannot follow.
_OWN_TEMPLATES = str(Path(__file__).resolve().parent / "templates")
# What every page's shape is drawn from besides its own template (base.html and its parts).
_PAGE_PARTS = ("base.html", "_chrome.html", "_sidebar.html", "_head_links.html", "_macros.html")
# The context entries of `page_context` that a shaped page may hold, and how each one counts:
# holes are per request, the others go into the key (the chrome memo keeps the same ones).
_PAGE_HOLES = ("csrf_token", "request_id")
_EMPTY_ONLY = ("flashes", "flash_messages", "breadcrumbs")


class ShapeMismatch(AssertionError):
    """A shaped page that differs from the same page drawn in full (only with CHECK_SHAPES)."""


class MemoMacros:
    """`_macros.html` with each macro's output memoised by its arguments, as the global `km`.

    A macro imported without context is a pure function of its arguments, and the same calls
    (a resource's filter fields, its action buttons, the breadcrumbs of a list) recur on every
    page view, while a Jinja macro call costs as much as a dozen plain expressions. Calls with
    an argument that cannot be frozen into a key are not memoised. Bounded: the `size` most
    recently used outputs."""

    def __init__(self, env: jinja2.Environment, size: int = 1024) -> None:
        self._env = env
        self._size = size
        self._outputs: OrderedDict[Any, Any] = OrderedDict()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        macro = getattr(self._env.get_template("_macros.html").module, name)
        if name in _NOT_MEMOISED:
            setattr(self, name, macro)
            return macro  # type: ignore[no-any-return]
        outputs = self._outputs

        def call(*args: Any, **kwargs: Any) -> Any:
            # Plain arguments (most calls) are their own key; others are frozen, which gives
            # keys of another shape (tagged, nested), so the two kinds never meet.
            for v in (*args, *kwargs.values()):
                if type(v) not in _PLAIN:
                    try:
                        key: Any = (name, _freeze(args), _freeze(kwargs))
                        hash(key)
                    except TypeError:
                        return macro(*args, **kwargs)
                    break
            else:
                key = (name, args, tuple(kwargs.items()))
            found = outputs.get(key)
            if found is not None:
                outputs.move_to_end(key)
                return found
            found = outputs[key] = macro(*args, **kwargs)
            if len(outputs) > self._size:
                outputs.popitem(last=False)
            return found

        setattr(self, name, call)
        return call


class _Context(jinja2.runtime.Context):
    """Jinja's context with a shorter way to call a plain function or method from a template.

    `Context.call` asks every callable, twice, whether it wants the context, the evaluation
    context or the environment passed in (a failed attribute lookup each time), and a page
    calls a few dozen memoised helpers (`km.button`, `chrome`, `fragment`) and macros. A
    function, a method or a macro says so with its `jinja_pass_arg` attribute, so one look in
    its `__dict__` answers; anything else (a callable object) goes the usual way."""

    def call(__self, __obj: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kind = type(__obj)
        if kind is FunctionType or kind is jinja2.runtime.Macro:
            attrs = __obj.__dict__
        elif kind is MethodType:
            attrs = __obj.__func__.__dict__  # type: ignore[attr-defined]
        else:
            return jinja2.runtime.Context.call(__self, __obj, *args, **kwargs)
        if "jinja_pass_arg" in attrs:
            return jinja2.runtime.Context.call(__self, __obj, *args, **kwargs)
        if kwargs:  # the compiler passes these along for context functions only
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
        try:
            return __obj(*args, **kwargs)
        except StopIteration:  # as Context.call: a template cannot catch it
            return __self.environment.undefined(
                "value was undefined because a callable raised a StopIteration exception"
            )


class _Environment(jinja2.Environment):
    """Templates see the globals as a plain dict taken when they are loaded, not a ChainMap.

    Jinja's ChainMap lets a change to the environment's globals reach templates already loaded,
    which its documentation says not to rely on; here every global is set before the first
    template loads. A dict makes each render's context (`dict(globals)`) and each `{% import %}`
    (which compares key sets) several times cheaper: 4 imports cost 180 µs a page with it."""

    context_class = _Context

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept in memory for the process, shared by every Renderer in it.

    Lexing, parsing and compiling a template costs far more than rendering it. A server builds
    one app and compiles each template once anyway; what builds many apps in one process (the
    test suite builds one per test) compiled them all again each time, a third of a page test's
    CPU. Every Renderer makes the same environment (same options, filters and globals by name),
    so code compiled for one is right for another, and Jinja checks the source's checksum before
    it reuses code: a template whose file changed is compiled again."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledTemplates()


class Renderer:
    def __init__(
        self, config: Config, static_url: Callable[[str], str], site: Site | None = None
    ) -> None:
        # The host's template_dir overrides the site's templates, which override Keel's.
        loaders: list[jinja2.BaseLoader] = []
        if config.template_dir:
            loaders.append(jinja2.FileSystemLoader(config.template_dir))
        if site is not None and site.templates_dir is not None:
            loaders.append(jinja2.FileSystemLoader(site.templates_dir))
        loaders.append(jinja2.PackageLoader("app.web", "templates"))
        self.env = _Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
            bytecode_cache=_COMPILED,
        )
        self.env.globals.update(
            site_name=config.site_name,
            version=__version__,
            # The footer's own name for it: a page's context may use `version` for something
            # else (an edit form's row version), which would shadow the global.
            keel_version=__version__,
            static_url=static_url,
            read_only=config.read_only,
            icon=self.icon,
            km=MemoMacros(self.env),
            sidebar=self.sidebar,
            fragment=self.fragment,
            fragment_by=self.fragment_by,
            chrome=self.chrome,
            shell=self.shell,
        )
        # A stored choice in its human form (`no_show` → "No show"), as list cells show it.
        self.env.filters["choice_label"] = choice_label
        self.env.filters["choice_options"] = choice_options
        self.context_hooks: list[Callable[[web.Request], dict[str, Any]]] = []
        # Templates are loaded once (auto_reload=False), so which name of a list exists is
        # decided once too: no TemplateNotFound raised and caught on every request.
        self._chosen: dict[tuple[str, ...], jinja2.Template] = {}
        self._icon = lru_cache(maxsize=256)(self._render_icon)
        self._sidebars: OrderedDict[Any, Any] = OrderedDict()
        self._fragments: OrderedDict[Any, Any] = OrderedDict()
        self._chromes: OrderedDict[Any, tuple[str, ...]] = OrderedDict()
        self._shells: dict[Any, tuple[Markup, Markup]] = {}
        self._shapes: OrderedDict[Any, tuple[str | int, ...]] = OrderedDict()
        self._shapeable: dict[str, bool] = {}
        self._hole_mark = "keel-hole-" + secrets.token_hex(8) + "-"
        self._hole_split = re.compile(re.escape(self._hole_mark) + r"(\d+)-")

    def _render_icon(self, name: str, label: str | None, size: str | None) -> Any:
        return self.env.get_template("_macros.html").module.icon(name, label, size)  # type: ignore[attr-defined]

    def icon(self, name: str, label: str | None = None, size: str | None = None) -> Any:
        """`_macros.html`'s `icon` macro, memoised: its output depends only on its arguments,
        and a page draws a dozen or more of them (the chrome, the sidebar)."""
        return self._icon(name, label, size)

    def sidebar(self, items: list[dict[str, Any]]) -> Any:
        """`_sidebar.html` for these nav items, kept per distinct list (LRU): the items depend
        on the user's permissions and the page, which repeat; drawing them is a tenth of a
        page's CPU."""
        try:
            key = _nav_key(items)
            hash(key)
        except TypeError:  # an unhashable value in an item: draw it each time
            return self._draw_sidebar(items)
        found = self._sidebars.get(key)
        if found is None:
            found = self._sidebars[key] = self._draw_sidebar(items)
            if len(self._sidebars) > 256:
                self._sidebars.popitem(last=False)
        else:
            self._sidebars.move_to_end(key)
        return found

    def fragment(self, name: str, **context: Any) -> Any:
        """The template `name` drawn with exactly `context` (and the globals), kept per
        distinct context (LRU, 256): for a part of a page that depends on a few values which
        repeat from one request to the next, such as a list's filter bar (`list.html`)."""
        try:
            key = (name, _freeze(context))
        except TypeError:  # a value that cannot be a key: draw it each time
            return self._draw(name, context)
        return self._kept_fragment(key, name, context)

    def fragment_by(self, name: str, key: Any, **context: Any) -> Any:
        """`fragment`, kept under `key` instead of the frozen context: for a context that is
        large to freeze and wholly decided by a small key (a list's filter bar: the resource
        and the list's query). The caller vouches that equal keys mean equal contexts; the
        key is tagged, so it never meets a `fragment` key."""
        return self._kept_fragment((name, "by", key), name, context)

    def _kept_fragment(self, key: Any, name: str, context: dict[str, Any]) -> Any:
        try:
            found = self._fragments.get(key)
        except TypeError:  # a value that cannot be a key: draw it each time
            return self._draw(name, context)
        if found is None:
            found = self._fragments[key] = self._draw(name, context)
            if len(self._fragments) > 256:
                self._fragments.popitem(last=False)
        else:
            self._fragments.move_to_end(key)
        return found

    def shell(self, name: str, *args: Any) -> tuple[Markup, Markup]:
        """What `_macros.html`'s macro `name` draws before and after its caller block, for
        these arguments: `{{ s[0] }}…{{ s[1] }}` draws what `{% call k.name(*args) %}…{% endcall %}`
        does, without a macro call and a caller macro per use. Kept per distinct call (plain
        arguments only, at most 256; beyond that drawn each time)."""
        plain = all(type(a) is str for a in args)
        key = (name, *args)
        found = self._shells.get(key) if plain else None
        if found is None:
            macro = getattr(self.env.get_template("_macros.html").module, name)
            mark = "keel-caller-" + secrets.token_hex(8)
            before, after = str(macro(*args, caller=lambda: Markup(mark))).split(mark)  # noqa: S704
            found = (Markup(before), Markup(after))  # noqa: S704 - drawn autoescaped
            if plain and len(self._shells) < 256:
                self._shells[key] = found
        return found

    # How many distinct chromes are kept: one per (user, page of the sidebar, theme) in use.
    CHROME_MEMO_SIZE = 512

    def chrome(
        self,
        user: Any,
        nav: list[dict[str, Any]],
        *,
        theme: Any,
        search_q: Any,
        insecure: Any,
        csrf_token: Any,
    ) -> Markup:
        """`_chrome.html`: the top bar, banners and sidebar of base.html, up to `<main>`.

        Kept per distinct input (LRU, `CHROME_MEMO_SIZE`): the user's email, role and name;
        the nav items, which this request built from the permissions it read, with the active
        page marked; the theme; the transport warning. A revoked permission changes the items,
        so the very next page draws a new chrome: nothing here is read from a cache that a
        revocation could miss. The form token, new on every page, is put in afterwards. Drawn
        fresh, not kept: a search's text (it rarely repeats), and a user that is not a
        `Principal` (a test's stand-in)."""

        def fresh() -> Markup:
            return self.draw_chrome(
                user, nav, theme=theme, search_q=search_q, insecure=insecure, csrf_token=csrf_token
            )

        if search_q or not (user is None or isinstance(user, Principal)):
            return fresh()
        who = None if user is None else ChromeUser(user.email, user.role, user.display_name)
        marked = bool(csrf_token)
        try:
            key = (who, _nav_key(nav), theme, bool(insecure), marked)
            hash(key)
        except TypeError:  # a value that cannot be a key: draw it each time
            return fresh()
        parts = self._chromes.get(key)
        if parts is None:
            token = _CSRF_MARK if marked else csrf_token
            drawn = self.draw_chrome(
                who, nav, theme=theme, search_q="", insecure=insecure, csrf_token=token
            )
            parts = self._chromes[key] = tuple(drawn.split(_CSRF_MARK))
            if len(self._chromes) > self.CHROME_MEMO_SIZE:
                self._chromes.popitem(last=False)
        else:
            self._chromes.move_to_end(key)
        if len(parts) == 1:
            return Markup(parts[0])  # noqa: S704 - drawn autoescaped
        return Markup(str(escape(csrf_token)).join(parts))  # noqa: S704 - the token escaped

    def draw_chrome(
        self,
        user: Any,
        nav: list[dict[str, Any]],
        *,
        theme: Any,
        search_q: Any,
        insecure: Any,
        csrf_token: Any,
    ) -> Markup:
        """`_chrome.html` drawn now, without the memo (what `chrome` keeps)."""
        context = {
            "user": user,
            "nav": nav,
            "theme": theme,
            "search_q": search_q,
            "insecure_transport": insecure,
            "csrf_token": csrf_token,
        }
        return self._draw("_chrome.html", context)  # type: ignore[no-any-return]

    def _draw(self, name: str, context: dict[str, Any]) -> Any:
        return Markup(self.env.get_template(name).render(context))  # noqa: S704 - autoescaped

    def _draw_sidebar(self, items: Any) -> Any:
        return Markup(self.env.get_template("_sidebar.html").render(nav=items))  # noqa: S704

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

    # How many page shapes are kept: a shape per resource, form state and chrome in use.
    SHAPE_MEMO_SIZE = 256

    def shaped_response(
        self,
        request: web.Request,
        names: list[str],
        key: Any,
        holes: Sequence[str | Markup],
        context: Callable[[Sequence[str | Markup]], dict[str, Any]],
    ) -> web.Response | None:
        """The page `names` draws from `context(holes)`, drawn once per shape and then filled.

        A page whose text differs from one request to the next only where a few values are
        inserted (an edit form: the record's title, its version, each field's HTML) is drawn
        once with a marker in place of each hole and kept split around the markers; later
        requests escape their values into the holes, and the form token and request id into
        two more. The template runs once per shape instead of once per request.

        `key` is the caller's word that equal keys give equal contexts apart from the holes;
        `context(values)` builds the template context from hole values (markers or real ones),
        so the page drawn in full and the shaped page come from the same code. Each hole must
        be inserted as it is: non-empty, not cut, compared or transformed by the templates
        (a str is escaped like the template would, a Markup is inserted unchanged). Keel's own
        templates are known to; with an override of any of them, or a page context this
        cannot key (a flash message, a sidebar without a key, a stand-in user), the answer is
        None and the caller draws the page as usual. Under CHECK_SHAPES (the test suite) every
        shaped page is compared with the page drawn in full."""
        template = self.template(names)
        if not self._own_templates(template):
            return None
        base = self.page_context(request)
        page_key = self._page_key(base)
        if page_key is None or not all(holes):
            return None
        values = [*holes, base["csrf_token"], base["request_id"]]
        full_key = (tuple(names), key, page_key, len(values))
        parts = self._shapes.get(full_key)
        if parts is None:
            # Each marker has the type of its value: a str is escaped on the way in, as the
            # marker is (it holds nothing to escape), a Markup is inserted unchanged.
            marks = [f"{self._hole_mark}{i}-" for i in range(len(values))]
            typed: list[str | Markup] = [
                Markup(m) if isinstance(v, Markup) else m  # noqa: S704 - a marker
                for m, v in zip(marks, values, strict=True)
            ]
            ctx = {**base, **context(typed[: len(holes)])}
            ctx["csrf_token"], ctx["request_id"] = typed[-2], typed[-1]
            pieces = self._hole_split.split(template.render(ctx))
            parts = tuple(int(p) if i % 2 else p for i, p in enumerate(pieces) if p or i % 2)
            self._shapes[full_key] = parts
            if len(self._shapes) > self.SHAPE_MEMO_SIZE:
                self._shapes.popitem(last=False)
        else:
            self._shapes.move_to_end(full_key)
        filled = [v if isinstance(v, Markup) else escape(v) for v in values]
        text = "".join([p if isinstance(p, str) else filled[p] for p in parts])
        if CHECK_SHAPES:
            whole = template.render({**base, **context(holes)})
            if whole != text:
                raise ShapeMismatch(f"shaped page {names[0]} differs from the page drawn in full")
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    def _own_templates(self, template: jinja2.Template) -> bool:
        """Whether the page and every part of base.html come from Keel's own templates."""
        name = template.name or ""
        found = self._shapeable.get(name)
        if found is None:
            drawn_from = [template, *(self.env.get_template(n) for n in _PAGE_PARTS)]
            found = all((t.filename or "").startswith(_OWN_TEMPLATES) for t in drawn_from)
            self._shapeable[name] = found
        return found

    def _page_key(self, base: dict[str, Any]) -> Any:
        """What of `page_context` a page's shape depends on, or None when it cannot be keyed."""
        user, nav = base.get("user"), base.get("nav")
        if not (user is None or isinstance(user, Principal)):
            return None
        if nav and not (type(nav) is Nav and nav.key is not None):
            return None
        if any(base.get(name) for name in _EMPTY_ONLY):
            return None
        if not all(base.get(name) for name in _PAGE_HOLES):
            return None
        who = None if user is None else ChromeUser(user.email, user.role, user.display_name)
        rest = {
            k: v for k, v in base.items() if k not in ("user", "nav", *_PAGE_HOLES, *_EMPTY_ONLY)
        }
        try:
            key = (who, nav.key if nav else (), _freeze(rest))
            hash(key)
        except TypeError:
            return None
        return key

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


def crumbs(*items: tuple[str, str | None]) -> list[dict[str, Any]]:
    """The one breadcrumb builder: Admin, then (label, url) pairs; the current page has no url."""
    return [{"label": "Admin", "url": "/admin/"}] + [{"label": t, "url": u} for t, u in items]
