"""Edit fields filled into cached shapes draw exactly what the field macro draws (EDIT-1, UI-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from markupsafe import Markup

from app.admin.edit_views import field_specs
from app.admin.field_html import FieldHtml
from app.config import Config
from app.web.render import Renderer

TRICKY = ["", "plain", "<b>\"quoted\" & 'single'</b>", "kv" + "0" * 16, "line\nbreak", "{{ 1 }}"]


def _renderer(config: Config) -> Renderer:
    return Renderer(config, lambda name: f"/static/{name}")


def _item(spec, value, *, label=None, error=None, url=None):
    return {"spec": spec, "value": value, "error": error, "lookup_url": url, "value_label": label}


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("creating", [False, True])
async def test_every_field_of_every_resource_matches_the_macro(
    bound, config: Config, locked: bool, creating: bool
) -> None:
    renderer = _renderer(config)
    drawer = FieldHtml(renderer.env, None)
    macro = renderer.env.get_template("admin/_edit_fields.html").module.render
    for b in bound.values():
        for spec in field_specs(b):
            values = list(TRICKY)
            if spec.widget == "select":
                values = ["", *spec.choices, "not-a-choice"]
            elif spec.widget == "checkbox":
                values = ["", "on"]
            for value in values:
                for label in (None, "", "Ada <Fixer> & co"):
                    url = "/admin/customers/lookup" if spec.widget == "autocomplete" else None
                    item = _item(spec, value, label=label, url=url)
                    # Twice: the first draws the shape, the second fills it.
                    for _ in range(2):
                        got = drawer.html(item, locked, creating)
                        assert isinstance(got, Markup)
                        assert got == macro(item, locked, creating), (b.slug, spec.name, value)


async def test_errors_and_overrides_are_drawn_by_the_macro(bound, config: Config, tmp_path: Path):
    renderer = _renderer(config)
    spec = next(s for s in field_specs(bound["bookings"]) if s.name == "notes")
    item = _item(spec, "text", error="too long")
    drawer = FieldHtml(renderer.env, None)
    assert "too long" in drawer.html(item, False, False)
    assert not drawer.shapes, "a field with an error is never kept as a shape"
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "_edit_fields.html").write_text(
        "{% macro render(i, l, c) %}x{% endmacro %}"
    )
    assert not FieldHtml(renderer.env, str(tmp_path)).enabled
