"""Edit-form fields drawn once per field shape, with holes for the values (EDIT-1, UI-4).

`admin/_edit_fields.html`'s `render` macro draws a field; a form calls it once per column and
each call runs a dozen nested macros (label, attributes, help, errors): most of an edit page's
CPU. What a field looks like depends on its spec, the form's state and, for a few widgets, on
the value; the value itself is only escaped and inserted. So each shape is drawn once with
markers in place of the value (and of the related row's name, for a foreign key) and later
filled with the escaped value: the same HTML as the macro, at the cost of a string join.

Values that change more than insertion — which option is selected, whether a box is checked —
are part of the shape (a handful each). A field with an error, a related name that is empty,
or a `template_dir` that overrides the field or macro templates is drawn by the macro itself.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from app.admin.forms import FieldSpec

FIELDS_TEMPLATE = "admin/_edit_fields.html"
MACROS_TEMPLATE = "_macros.html"
# Widgets whose value decides more than the text inserted: drawn per value.
BY_VALUE = frozenset({"select", "checkbox"})
MAX_SHAPES = 4096  # bounded whatever the values: beyond this, shapes are drawn, not kept


class FieldHtml:
    """Fills `item`s (`{spec, value, error, lookup_url, value_label}`) into cached shapes."""

    def __init__(self, env: jinja2.Environment, template_dir: str | None) -> None:
        self.env = env
        # Markers that escaping leaves alone and that no real value contains by chance.
        self.value_mark = "kv" + secrets.token_hex(8)
        self.label_mark = "kl" + secrets.token_hex(8)
        overridden = template_dir is not None and any(
            (Path(template_dir) / name).exists() for name in (FIELDS_TEMPLATE, MACROS_TEMPLATE)
        )
        # An override may do more with a value than insert it: then every field is drawn.
        self.enabled = not overridden
        # Keyed by the spec's id, not the spec: hashing a spec hashes its eighteen fields, on
        # every field of every page. The entry holds the spec, so that id cannot go to another
        # spec while the entry lives; a hit is still checked to be the very same object.
        self.shapes: dict[tuple[Any, ...], tuple[FieldSpec, tuple[str | int, ...]]] = {}

    def _macro(self, item: Mapping[str, Any], locked: bool, creating: bool) -> Markup:
        module = self.env.get_template(FIELDS_TEMPLATE).module
        return module.render(item, locked, creating)  # type: ignore[attr-defined,no-any-return]

    def html(self, item: Mapping[str, Any], locked: bool, creating: bool) -> Markup:
        spec: FieldSpec = item["spec"]
        value, label = item.get("value"), item.get("value_label")
        if (
            not self.enabled
            or item.get("error")
            or not isinstance(value, str)
            or (spec.widget == "autocomplete" and not (isinstance(label, str) and label))
        ):
            return self._macro(item, locked, creating)
        by_value = spec.widget in BY_VALUE
        key = (id(spec), locked, creating, item.get("lookup_url"), value if by_value else None)
        found = self.shapes.get(key)
        if found is not None and found[0] is spec:
            parts = found[1]
        else:
            shape = dict(item)
            if not by_value:
                shape["value"] = self.value_mark
            if spec.widget == "autocomplete":
                shape["value_label"] = self.label_mark
            drawn = str(self._macro(shape, locked, creating))
            parts = _split(drawn, self.value_mark, self.label_mark)
            if len(self.shapes) < MAX_SHAPES:
                self.shapes[key] = (spec, parts)
        holes = (escape(value), escape(label or "") if label else "")
        return Markup("".join([p if isinstance(p, str) else holes[p] for p in parts]))  # noqa: S704 - holes escaped


def _split(text: str, *marks: str) -> tuple[str | int, ...]:
    """`text` cut around every marker; each marker becomes its index in `marks`."""
    parts: list[str | int] = [text]
    for index, mark in enumerate(marks):
        cut: list[str | int] = []
        for part in parts:
            if type(part) is not str:
                cut.append(part)
                continue
            pieces = part.split(mark)
            for i, piece in enumerate(pieces):
                if i:
                    cut.append(index)
                cut.append(piece)
        parts = cut
    return tuple(p for p in parts if p != "")


_BY_ENV: weakref.WeakKeyDictionary[jinja2.Environment, FieldHtml] = weakref.WeakKeyDictionary()


def for_env(env: jinja2.Environment, template_dir: str | None) -> FieldHtml:
    """The shapes of one application's templates (one Jinja environment per application)."""
    found = _BY_ENV.get(env)
    if found is None:
        found = _BY_ENV[env] = FieldHtml(env, template_dir)
    return found
