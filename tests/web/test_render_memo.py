"""The memoised macros (`km`), icons and sidebar draw exactly what the macros draw (UI-1..4)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from markupsafe import Markup

from app.config import Config
from app.web.render import Renderer


def _renderer(config: Config) -> Renderer:
    return Renderer(config, lambda name: f"/static/{name}")


def test_km_matches_the_macros_and_keys_by_type(config: Config) -> None:
    r = _renderer(config)
    k = r.env.get_template("_macros.html").module
    km = r.env.globals["km"]
    calls = [
        ("button", ("Save",), {"kind": "primary", "name": "_save", "value": "save"}),
        ("button", ("a&b",), {"href": "/x?a=1&b=2", "icon_name": "plus"}),
        ("button", (Markup("<b>a&amp;b</b>"),), {"href": "/x?a=1&b=2", "icon_name": "plus"}),
        ("select", ("s", "S", (("a", "A"), ("b", "B")), ("b",)), {"multiple": True}),
        ("select", ("s", "S", [("a", "A"), ("b", "B")], ["b"]), {"multiple": True}),
        ("field", ("n", "N", 1), {"type": "number"}),
        ("field", ("n", "N", True), {"type": "number"}),
        (
            "breadcrumbs",
            ([{"label": "Admin", "url": "/admin/"}, {"label": "<x>", "url": None}],),
            {},
        ),
    ]
    for _ in range(2):  # drawn, then served from the memo
        for name, args, kwargs in calls:
            assert getattr(km, name)(*args, **kwargs) == getattr(k, name)(*args, **kwargs), name
    # "a&b" and Markup("a&b") are equal strings that draw differently: never one key.
    plain, markup = km.badge("a&amp;b"), km.badge(Markup("a&amp;b"))
    assert plain != markup and "&amp;amp;" in plain and "&amp;amp;" not in markup


def test_icon_and_sidebar_match_their_templates(config: Config) -> None:
    r = _renderer(config)
    k = r.env.get_template("_macros.html").module
    assert r.icon("menu") == k.icon("menu") and r.icon("x", "Close") == k.icon("x", "Close")
    nav = [
        {
            "label": "Dashboard",
            "url": "/admin/",
            "active": True,
            "section": "Overview",
            "icon": "home",
        },
        {"label": "B <&>", "url": "/admin/b/", "active": False, "section": "Data", "icon": "list"},
        {"label": "C", "url": "/admin/c/", "active": False, "section": "Data", "count": 3},
    ]
    drawn = r.env.get_template("_sidebar.html").render(nav=nav)
    assert r.sidebar(nav) == drawn and r.sidebar(nav) == drawn
    assert "B &lt;&amp;&gt;" in drawn and drawn.count("k-nav-heading") == 2
    nav[1]["active"] = True  # another page: another sidebar
    assert r.sidebar(nav) != drawn


def test_compiled_templates_are_shared_and_a_changed_file_is_compiled_again(
    config: Config, tmp_path: Path
) -> None:
    """Renderers in one process share compiled templates (the suite builds an app per test);
    a template file that changed between two Renderers is compiled again, not reused stale."""
    page = tmp_path / "note.html"
    page.write_text("<p>one {{ 1 + 1 }}</p>", encoding="utf-8")
    host = replace(config, template_dir=str(tmp_path))
    first = _renderer(host)
    assert first.render_text("note.html", {}) == "<p>one 2</p>"
    shared = first.env.bytecode_cache
    assert shared is not None and shared is _renderer(config).env.bytecode_cache
    page.write_text("<p>two {{ 2 + 2 }}</p>", encoding="utf-8")
    assert _renderer(host).render_text("note.html", {}) == "<p>two 4</p>"
    # A built-in template draws the same from shared code as from a fresh compile.
    fresh = _renderer(config)
    fresh.env.bytecode_cache = None
    k = _renderer(config).env.get_template("_macros.html").module
    assert k.icon("menu") == fresh.env.get_template("_macros.html").module.icon("menu")


def test_fragments_are_drawn_per_distinct_context(config: Config) -> None:
    """The list's filter bar: the same values give the kept output, any change a new one."""
    r = _renderer(config)
    filters = [
        {"name": "status", "label": "Status", "kind": "choice", "values": ("open",),
         "gte": "", "lte": "", "options": (("open", "Open"), ("done", "Done")),
         "tones": {"open": "info", "done": "success"}},
    ]  # fmt: skip
    ctx = {"slug": "jobs", "title": "Jobs", "q": "", "search_enabled": True, "chips": []}
    template = r.env.get_template("admin/_list_filters.html")
    first = r.fragment("admin/_list_filters.html", filters=filters, **ctx)
    assert first == template.render(filters=filters, **ctx)
    assert 'value="open" checked' in first and 'value="done">' in first
    again = r.fragment("admin/_list_filters.html", filters=filters, **ctx)
    assert again is first  # kept
    other = [{**filters[0], "values": ("done",)}]
    changed = r.fragment("admin/_list_filters.html", filters=other, **ctx)
    assert 'value="done" checked' in changed and 'value="open" checked' not in changed
    searched = r.fragment("admin/_list_filters.html", filters=filters, **{**ctx, "q": "<b>"})
    assert 'value="&lt;b&gt;"' in searched  # escaped, and not the kept bar
    # A value that cannot be a key is drawn every time, still correctly.
    odd = [{**filters[0], "values": [{"x"}]}]
    assert "Status" in r.fragment("admin/_list_filters.html", filters=odd, **ctx)


def test_fragments_kept_by_a_key_are_drawn_once_per_key(config: Config) -> None:
    """`fragment_by`: the caller's key stands for the context; another key is another
    drawing, an unhashable key draws every time, and the kept drawings never meet
    `fragment`'s."""
    r = _renderer(config)
    name = "admin/_list_filters.html"
    ctx = {"slug": "jobs", "title": "Jobs", "search_enabled": True, "filters": [], "chips": []}
    template = r.env.get_template(name)
    first = r.fragment_by(name, ("jobs", ()), q="", **ctx)
    assert first == template.render(q="", **ctx)
    assert r.fragment_by(name, ("jobs", ()), q="", **ctx) is first
    other = r.fragment_by(name, ("jobs", (("q", "x"),)), q="x", **ctx)
    assert 'value="x"' in other and other is not first
    assert 'value="y"' in r.fragment_by(name, ["unhashable"], q="y", **ctx)
    assert 'value="z"' in r.fragment(name, q="z", **ctx)  # its own key, not a kept bar


def test_freeze_keys_keep_types_apart_in_every_container() -> None:
    from app.web.render import _freeze

    assert _freeze(["a", 1, None]) == ("a", 1, None) == _freeze(("a", 1, None))
    assert _freeze({"a": 1, "b": None}) == ("{}", (("a", 1), ("b", None)))
    # A bool, a float or Markup anywhere keys by type, at any depth, plain neighbours or not.
    for odd, plain in ((True, 1), (1.0, 1), (Markup("a"), "a")):
        assert _freeze([plain, odd]) != _freeze([plain, plain])
        assert _freeze({"x": odd, "y": 2}) != _freeze({"x": plain, "y": 2})
        assert _freeze([{"x": [odd]}]) != _freeze([{"x": [plain]}])


def test_km_keys_plain_and_frozen_arguments_apart(config: Config) -> None:
    """Plain arguments key a call as they are, others frozen: equal-looking calls of the two
    kinds (1 and True, a list and its items) are drawn each as the macro draws it."""
    r = _renderer(config)
    k = r.env.get_template("_macros.html").module
    km = r.env.globals["km"]
    calls = [
        (("n", "N", 1), {"type": "number"}),
        (("n", "N", True), {"type": "number"}),
        (("n", "N", 1), {}),
        (("n", "N"), {"value": 1}),
        (("n", "N"), {"value": True}),
        (("n", "N", None), {"type": "number"}),
    ]
    for _ in range(2):
        for args, kwargs in calls:
            assert km.field(*args, **kwargs) == k.field(*args, **kwargs), (args, kwargs)


def test_templates_call_functions_methods_and_macros_as_jinja_does(config: Config) -> None:
    """The shorter call path (`_Context.call`) keeps Jinja's rules: a function that asks for
    the context, the evaluation context or the environment gets it; a StopIteration becomes an
    undefined value; macros get their loop and caller arguments."""
    import jinja2

    r = _renderer(config)

    @jinja2.pass_context
    def who(ctx: jinja2.runtime.Context, greeting: str) -> str:
        return f"{greeting} {ctx['name']}"

    @jinja2.pass_environment
    def env_name(env: jinja2.Environment) -> str:
        return type(env).__name__

    @jinja2.pass_eval_context
    def escaping(ectx: jinja2.nodes.EvalContext) -> str:
        return str(ectx.autoescape)

    def stops() -> str:
        raise StopIteration

    class Callable:
        @jinja2.pass_context
        def __call__(self, ctx: jinja2.runtime.Context) -> str:
            return "object " + ctx["name"]

    def plain(a: str, b: str = "") -> str:
        return a + b

    template = r.env.from_string(
        "{% macro m(x) %}[{{ x }}{{ caller() if caller else '' }}]{% endmacro %}"
        "{{ who('hi') }}|{{ env_name() }}|{{ escaping() }}|{{ stops() is undefined }}|"
        "{{ obj() }}|{{ plain('a', b='b') }}|{{ shell }}|"
        "{% for i in [1, 2] %}{{ m(i) }}{{ plain(loop.index|string) }}{% endfor %}|"
        "{% call m('c') %}in{% endcall %}"
    )
    out = template.render(
        name="Ada", who=who, env_name=env_name, escaping=escaping, stops=stops,
        obj=Callable(), plain=plain, shell=r.shell("fieldset", "T")[0][:9],
    )  # fmt: skip
    assert out == ("hi Ada|_Environment|True|True|object Ada|ab|<fieldset|[1]1[2]2|[cin]")
