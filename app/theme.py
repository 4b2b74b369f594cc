"""The theme engine: Keel's colour tokens computed from brand colours, every pair checked.

`generate(["#rrggbb", …])` returns a `Theme`: the brand tokens (fill, hover, active, text, tints,
focus) and the status tokens (success, warning, danger, info) for the light and the dark theme,
and the WCAG 2.2 contrast of every foreground/background pair the stylesheet uses (4.5:1 for
text, 3:1 for borders, focus rings and controls). A pair that fails is repaired by moving the
lightness of the token in OKLCH, keeping its hue, to the nearest value that passes. Vivid input
is tamed (its chroma capped), never refused; a status colour whose hue is too close to a brand
colour is turned away from it, so "danger" never looks like the brand.

Pure Python: the sRGB ↔ OKLab matrices are Björn Ottosson's (https://bottosson.github.io/posts/oklab/),
the luminance and contrast formulas are WCAG 2.2's. Used by `keel theme generate` (a file a site
ships as `static/theme.css`) and by the `brand_color` setting (a stylesheet generated at start).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TEXT = 4.5  # WCAG 1.4.3: text and images of text
NON_TEXT = 3.0  # WCAG 1.4.11: input boundaries, focus indicators, control fills
CHROMA_CAP = 0.20  # OKLCH chroma; Keel's own brand sits at 0.199, #00ff00 at 0.295
HUE_GAP = 30.0  # degrees between a status colour and any brand colour
HUE_DRIFT = 40.0  # how far a status colour may turn from its own hue and stay recognisable
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")

DEFAULT_BRAND = "#3b5bdb"
THEMES = ("light", "dark")

# The neutral tokens of keel.css the engine checks against but never changes.
NEUTRALS: dict[str, dict[str, str]] = {
    "light": {
        "bg": "#f5f6f8",
        "surface": "#ffffff",
        "surface-2": "#fbfbfc",
        "hover": "#f0f2f5",
        "border-strong": "#838c9b",
        "text": "#171a20",
        "text-muted": "#555d6b",
    },
    "dark": {
        "bg": "#0d0f13",
        "surface": "#15181e",
        "surface-2": "#191c23",
        "hover": "#1e222a",
        "border-strong": "#6b7382",
        "text": "#e7e9ee",
        "text-muted": "#9da5b3",
    },
}
_WHITE, _DARK_TEXT = "#ffffff", "#0e1014"

# Keel's own brand family (keel.css) per theme: the shapes a new brand is fitted into.
_BRAND_DEFAULTS: dict[str, dict[str, str]] = {
    "light": {
        "brand-hover": "#3451c7",
        "brand-active": "#2c45ab",
        "brand-text": "#3451c7",
        "brand-tint": "#eef2ff",
        "brand-tint-strong": "#dde5ff",
    },
    "dark": {
        "brand-hover": "#4a69e6",
        "brand-active": "#2f4fcf",
        "brand-text": "#93a6ff",
        "brand-tint": "#1b2340",
        "brand-tint-strong": "#243058",
    },
}

STATUSES = ("success", "warning", "danger", "info")
# Keel's status tokens (keel.css): X (solid), X-text, X-tint, X-border per theme.
_STATUS_DEFAULTS: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "light": {
        "success": ("#1a7f4b", "#156a3e", "#e8f6ee", "#a6dbbd"),
        "warning": ("#b86e00", "#8a5100", "#fff5e0", "#f0cd8a"),
        "danger": ("#c4302b", "#b02620", "#fdeeed", "#f3b4ae"),
        "info": ("#0b6bcb", "#0a5cad", "#e9f2fd", "#a8ccf2"),
    },
    "dark": {
        "success": ("#3fb97a", "#6fd49f", "#112519", "#225a3b"),
        "warning": ("#e0a23a", "#f0bd63", "#2a200d", "#5e4516"),
        "danger": ("#e5534b", "#ff8f87", "#2c1515", "#6e2823"),
        "info": ("#4aa3f0", "#80bef6", "#0f2032", "#1f4b73"),
    },
}
_DANGER_STRONG = ("#c4302b", "#a82824")  # the danger button's fill and hover, both themes


class ColourError(ValueError):
    """A colour that is not `#rrggbb` (or `#rgb`)."""


# ---- colour maths -------------------------------------------------------------------------


def parse_hex(text: str) -> str:
    """`#RGB`, `#rrggbb` (the `#` optional) → `#rrggbb` in lower case."""
    m = _HEX.match(text.strip())
    if not m:
        raise ColourError(f"{text[:40]!r} is not a hex colour")
    digits = m.group(1).lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255)


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(min(1.0, max(0.0, c)) * 255):02x}" for c in rgb)


def _linear(c: float) -> float:
    # WCAG 2.2 prints 0.03928; sRGB's 0.04045 is the exact value. No 8-bit channel lies
    # between the two, so the results are identical.
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _gamma(c: float) -> float:
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2.2 relative luminance of an sRGB colour."""
    r, g, b = (_linear(c) for c in _rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2.2 contrast ratio, from 1 to 21."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def oklch(hex_colour: str) -> tuple[float, float, float]:
    """Lightness 0–1, chroma (0 to about 0.37) and hue in degrees."""
    r, g, b = (_linear(c) for c in _rgb(hex_colour))
    l_ = (0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b) ** (1 / 3)
    m_ = (0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b) ** (1 / 3)
    s_ = (0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b) ** (1 / 3)
    lightness = 0.2104542553 * l_ + 0.7936177850 * m_ - 0.0040720468 * s_
    a = 1.9779984951 * l_ - 2.4285922050 * m_ + 0.4505937099 * s_
    bb = 0.0259040371 * l_ + 0.7827717662 * m_ - 0.8086757660 * s_
    return lightness, math.hypot(a, bb), math.degrees(math.atan2(bb, a)) % 360


def _oklch_to_rgb(lightness: float, chroma: float, hue: float) -> tuple[float, float, float]:
    a = chroma * math.cos(math.radians(hue))
    b = chroma * math.sin(math.radians(hue))
    l_ = (lightness + 0.3963377774 * a + 0.2158037573 * b) ** 3
    m_ = (lightness - 0.1055613458 * a - 0.0638541728 * b) ** 3
    s_ = (lightness - 0.0894841775 * a - 1.2914855480 * b) ** 3
    r = 4.0767416621 * l_ - 3.3077115913 * m_ + 0.2309699292 * s_
    g = -1.2684380046 * l_ + 2.6097574011 * m_ - 0.3413193965 * s_
    bl = -0.0041960863 * l_ - 0.7034186147 * m_ + 1.7076147010 * s_
    return (_gamma(max(0.0, r)), _gamma(max(0.0, g)), _gamma(max(0.0, bl)))


def from_oklch(lightness: float, chroma: float, hue: float) -> str:
    """The sRGB colour of that lightness and hue; chroma is reduced until it fits sRGB."""
    lightness = min(1.0, max(0.0, lightness))

    def fits(c: float) -> bool:
        a = c * math.cos(math.radians(hue))
        b = c * math.sin(math.radians(hue))
        lms = (
            (lightness + 0.3963377774 * a + 0.2158037573 * b) ** 3,
            (lightness - 0.1055613458 * a - 0.0638541728 * b) ** 3,
            (lightness - 0.0894841775 * a - 1.2914855480 * b) ** 3,
        )
        rgb = (
            4.0767416621 * lms[0] - 3.3077115913 * lms[1] + 0.2309699292 * lms[2],
            -1.2684380046 * lms[0] + 2.6097574011 * lms[1] - 0.3413193965 * lms[2],
            -0.0041960863 * lms[0] - 0.7034186147 * lms[1] + 1.7076147010 * lms[2],
        )
        return all(-1e-4 <= v <= 1 + 1e-4 for v in rgb)

    if not fits(chroma):
        lo, hi = 0.0, chroma
        for _ in range(18):  # chroma to within 1e-6 of the sRGB boundary
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        chroma = lo
    return _hex(_oklch_to_rgb(lightness, chroma, hue))


def hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


# ---- repair -------------------------------------------------------------------------------


def nearest_passing(
    colour: str,
    needs: Sequence[tuple[str, float]],
    *,
    start: float | None = None,
    chroma: float | None = None,
) -> str:
    """The colour of the same hue nearest in OKLCH lightness to `start` (default: its own)
    that reaches every `(other colour, ratio)` in `needs`. Always answers: black or white
    reaches 4.58:1 against anything, so the search ends at one of them at worst."""
    lightness, c, hue = oklch(colour)
    c = c if chroma is None else chroma
    origin = lightness if start is None else start

    def ok(candidate: str) -> bool:
        return all(contrast(candidate, other) >= ratio for other, ratio in needs)

    first = from_oklch(origin, c, hue) if start is not None or chroma is not None else colour
    if ok(first):
        return first
    step = 0.0025
    for i in range(1, int(1 / step) + 2):
        for value in (origin - i * step, origin + i * step):
            if 0.0 <= value <= 1.0:
                candidate = from_oklch(value, c, hue)
                if ok(candidate):
                    return candidate
    for extreme in ("#000000", "#ffffff"):
        if ok(extreme):
            return extreme
    # Several needs that no single lightness meets at once: keep the best of the extremes.
    return max(("#000000", "#ffffff"), key=lambda x: min(contrast(x, o) for o, _ in needs))


def _shift(colour: str, delta: float) -> str:
    lightness, c, hue = oklch(colour)
    return from_oklch(lightness + delta, c, hue)


# ---- the theme ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    theme: str
    fg: str
    bg: str
    use: str
    need: float
    ratio: float

    @property
    def ok(self) -> bool:
        return self.ratio >= self.need


# (foreground token, background token, use, need): the pairs of docs/design.md's table.
PAIRS: tuple[tuple[str, str, str, float], ...] = (
    ("text", "surface", "body text on panels", TEXT),
    ("text", "bg", "body text on page background", TEXT),
    ("text-muted", "surface", "help text, table headers", TEXT),
    ("text-muted", "bg", "muted text on page", TEXT),
    ("text-muted", "surface-2", "table header labels", TEXT),
    ("text-muted", "hover", "muted text on hovered row", TEXT),
    ("brand-text", "surface", "links", TEXT),
    ("brand-text", "bg", "links on page background", TEXT),
    ("brand-text", "brand-tint", "active nav item, chips", TEXT),
    ("on-brand", "brand", "primary button", TEXT),
    ("on-brand", "brand-hover", "primary button, hover", TEXT),
    ("on-brand", "brand-active", "primary button, pressed", TEXT),
    ("on-danger", "danger-strong", "danger button", TEXT),
    ("on-danger", "danger-strong-hover", "danger button, hover", TEXT),
    *((f"{s}-text", f"{s}-tint", f"{s} badge", TEXT) for s in STATUSES),
    ("danger-text", "surface", "inline field error", TEXT),
    ("success-text", "surface", "success text", TEXT),
    *(("text", f"{s}-tint", f"flash text ({s})", TEXT) for s in STATUSES),
    ("text", "brand-tint", "selected table row", TEXT),
    ("text", "brand-tint-strong", "selected row, strong", TEXT),
    ("border-strong", "surface", "input border", NON_TEXT),
    ("border-strong", "bg", "input border on page background", NON_TEXT),
    ("danger", "surface", "invalid input border", NON_TEXT),
    ("focus", "surface", "focus ring", NON_TEXT),
    ("focus", "bg", "focus ring on page background", NON_TEXT),
    ("brand", "surface", "checkbox / radio fill, active tab", NON_TEXT),
    *((s, f"{s}-tint", f"flash icon ({s})", NON_TEXT) for s in STATUSES),
)


@dataclass
class Theme:
    brands: list[str]  # as given, normalised
    light: dict[str, str] = field(default_factory=dict)
    dark: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was tamed, turned or repaired

    def tokens(self, theme: str) -> dict[str, str]:
        return self.light if theme == "light" else self.dark

    def checks(self) -> list[Check]:
        out = []
        for theme in THEMES:
            values = {**NEUTRALS[theme], **self.tokens(theme)}
            for fg, bg, use, need in PAIRS:
                out.append(
                    Check(theme, fg, bg, use, need, round(contrast(values[fg], values[bg]), 2))
                )
            for i in range(2, len(self.brands) + 1):
                for fg, bg, use, need in (
                    (f"on-accent-{i}", f"accent-{i}", f"accent {i} fill", TEXT),
                    (f"accent-{i}-text", "surface", f"accent {i} text", TEXT),
                    (f"accent-{i}", "surface", f"accent {i} on surface", NON_TEXT),
                ):
                    out.append(
                        Check(theme, fg, bg, use, need, round(contrast(values[fg], values[bg]), 2))
                    )
        return out

    def css(self) -> str:
        """Custom properties that override keel.css's, with the same selectors, so a page
        that links this file after keel.css follows the theme menu exactly as before."""

        def block(tokens: dict[str, str], indent: str) -> str:
            return "\n".join(f"{indent}--keel-{name}: {value};" for name, value in tokens.items())

        light, dark = _with_ring(self.light), _with_ring(self.dark)
        return (
            f"/* Keel theme from {', '.join(self.brands)}: generated by `keel theme generate`;"
            " every text pair >= 4.5:1, every control >= 3:1 (WCAG 2.2). */\n"
            f":root {{\n{block(light, '  ')}\n}}\n"
            "@media (prefers-color-scheme: dark) {\n"
            '  :root:not([data-theme="light"]):not(:has(#k-theme-light:checked)) {\n'
            f"{block(dark, '    ')}\n  }}\n}}\n"
            ':root[data-theme="dark"], :root:has(#k-theme-dark:checked) {\n'
            f"{block(dark, '  ')}\n}}\n"
        )

    def report(self) -> dict[str, object]:
        return {
            "brands": self.brands,
            "tokens": {"light": self.light, "dark": self.dark},
            "notes": self.notes,
            "checks": [
                {
                    "theme": c.theme,
                    "foreground": f"--keel-{c.fg}",
                    "background": f"--keel-{c.bg}",
                    "use": c.use,
                    "need": c.need,
                    "ratio": c.ratio,
                    "ok": c.ok,
                }
                for c in self.checks()
            ],
        }


def _with_ring(tokens: dict[str, str]) -> dict[str, str]:
    r, g, b = (round(c * 255) for c in _rgb(tokens["focus"]))
    return {**tokens, "focus-ring": f"0 0 0 3px rgb({r} {g} {b} / 0.3)"}


def _fill(brand: str, surface: str, *, white_only: bool = False) -> tuple[str, str]:
    """A button fill near `brand` and its text colour: white or near-black, whichever needs
    the smaller change of lightness, so a yellow brand gets dark text instead of turning brown.
    The fill also stands out from the surface (3:1), as checkboxes and tabs use it."""
    lightness = oklch(brand)[0]
    options = []
    for text in (_WHITE,) if white_only else (_WHITE, _DARK_TEXT):
        fill = nearest_passing(brand, [(text, TEXT), (surface, NON_TEXT)])
        # Ties go to white text: the look of every other Keel button.
        bias = 0.0 if text == _WHITE else 0.03
        options.append((abs(oklch(fill)[0] - lightness) + bias, fill, text))
    _, fill, text = min(options)
    return fill, text


def _states(fill: str, text: str) -> tuple[str, str]:
    """Hover and pressed: a step further from the text colour, so the text stays readable."""
    sign = -1.0 if text == _WHITE else 1.0
    if _shift(fill, sign * 0.04) == fill:  # already black or white: step the other way
        sign = -sign
    step = 0.04
    while _shift(fill, sign * step) == fill and step < 0.2:  # near black, steps look alike
        step += 0.02
    hover = nearest_passing(_shift(fill, sign * step), [(text, TEXT)])
    active = nearest_passing(_shift(fill, sign * 2 * step), [(text, TEXT)])
    return hover, active


def _fitted(default: str, hue: float, chroma: float) -> str:
    """Keel's token `default` re-coloured: its lightness, the brand's hue, no more chroma."""
    lightness, c, _ = oklch(default)
    return from_oklch(lightness, min(c, chroma), hue)


def _brand_family(brand: str, theme: str) -> dict[str, str]:
    n = NEUTRALS[theme]
    _, chroma, hue = oklch(brand)
    fill, on = _fill(brand, n["surface"])
    hover, active = _states(fill, on)
    d = _BRAND_DEFAULTS[theme]
    tint = _fitted(d["brand-tint"], hue, chroma)
    tint = nearest_passing(tint, [(n["text"], TEXT)])
    tint_strong = nearest_passing(_fitted(d["brand-tint-strong"], hue, chroma), [(n["text"], TEXT)])
    text = nearest_passing(
        _fitted(d["brand-text"], hue, chroma * 1.5),
        [(n["surface"], TEXT), (n["bg"], TEXT), (n["hover"], TEXT), (tint, TEXT)],
    )
    # The focus ring is the fill where it stands out on both backgrounds, else the link colour.
    focus = nearest_passing(fill, [(n["surface"], NON_TEXT), (n["bg"], NON_TEXT)])
    if focus != fill:
        focus = text
    return {
        "brand": fill,
        "brand-hover": hover,
        "brand-active": active,
        "brand-text": text,
        "brand-tint": tint,
        "brand-tint-strong": tint_strong,
        "on-brand": on,
        "focus": focus,
    }


def _accent(brand: str, i: int, theme: str) -> dict[str, str]:
    n = NEUTRALS[theme]
    fill, on = _fill(brand, n["surface"])
    _, chroma, hue = oklch(brand)
    text = nearest_passing(
        _fitted(_BRAND_DEFAULTS[theme]["brand-text"], hue, chroma * 1.5),
        [(n["surface"], TEXT), (n["bg"], TEXT)],
    )
    return {f"accent-{i}": fill, f"on-accent-{i}": on, f"accent-{i}-text": text}


def _status_hues(brand_hues: Sequence[tuple[float, float]], notes: list[str]) -> dict[str, float]:
    """Each status colour's hue, turned away from any brand hue closer than HUE_GAP."""
    base = {s: oklch(_STATUS_DEFAULTS["light"][s][0])[2] for s in STATUSES}
    out = dict(base)
    for status in STATUSES:
        for b_hue, b_chroma in brand_hues:
            if b_chroma < 0.04 or hue_distance(out[status], b_hue) >= HUE_GAP:
                continue  # a grey brand has no hue to clash with
            candidates = [
                (b_hue + sign * HUE_GAP) % 360
                for sign in (1, -1)
                if hue_distance((b_hue + sign * HUE_GAP) % 360, base[status]) <= HUE_DRIFT
            ]
            if not candidates:
                notes.append(f"{status} stays close to brand hue {b_hue:.0f}°")
                continue
            others = [base[o] for o in STATUSES if o != status]
            turned = max(candidates, key=lambda h: min(hue_distance(h, o) for o in others))
            notes.append(
                f"{status} turned from hue {out[status]:.0f}° to {turned:.0f}°: "
                f"too close to brand hue {b_hue:.0f}°"
            )
            out[status] = turned
    return out


def _status_family(status: str, hue: float, theme: str) -> dict[str, str]:
    n = NEUTRALS[theme]
    solid, text, tint, border = _STATUS_DEFAULTS[theme][status]
    if abs(hue_distance(hue, oklch(solid)[2])) > 0.5:
        solid, text, tint, border = (
            from_oklch(*oklch(c)[:2], hue) for c in (solid, text, tint, border)
        )
    tint = nearest_passing(tint, [(n["text"], TEXT)])
    text = nearest_passing(text, [(tint, TEXT), (n["surface"], TEXT), (n["bg"], TEXT)])
    solid = nearest_passing(solid, [(tint, NON_TEXT), (n["surface"], NON_TEXT)])
    return {
        status: solid,
        f"{status}-text": text,
        f"{status}-tint": tint,
        f"{status}-border": border,
    }


def generate(brands: Sequence[str]) -> Theme:
    """The tokens for these brand colours (the first is the brand, the others accents)."""
    if not brands:
        raise ColourError("no brand colour given")
    given = [parse_hex(b) for b in brands]
    theme = Theme(brands=given)
    tamed = []
    for colour in given:
        lightness, chroma, hue = oklch(colour)
        if chroma > CHROMA_CAP:
            capped = from_oklch(lightness, CHROMA_CAP, hue)
            theme.notes.append(
                f"{colour} tamed to {capped}: chroma {chroma:.2f} capped at {CHROMA_CAP:.2f}"
            )
            tamed.append(capped)
        else:
            tamed.append(colour)
    hues = _status_hues([(oklch(c)[2], oklch(c)[1]) for c in tamed], theme.notes)
    for name in THEMES:
        tokens = theme.tokens(name)
        tokens.update(_brand_family(tamed[0], name))
        for i, accent in enumerate(tamed[1:], start=2):
            tokens.update(_accent(accent, i, name))
        for status in STATUSES:
            tokens.update(_status_family(status, hues[status], name))
        n = NEUTRALS[name]
        strong = nearest_passing(
            from_oklch(*oklch(_DANGER_STRONG[0])[:2], hues["danger"]),
            [(_WHITE, TEXT), (n["surface"], NON_TEXT)],
        )
        tokens["danger-strong"] = strong
        tokens["danger-strong-hover"] = nearest_passing(_shift(strong, -0.05), [(_WHITE, TEXT)])
        tokens["on-danger"] = _WHITE
        if tokens["brand"] != tamed[0]:
            theme.notes.append(
                f"{name}: brand fill {tamed[0]} moved to {tokens['brand']} so that "
                f"{'white' if tokens['on-brand'] == _WHITE else 'dark'} text on it reads at 4.5:1"
            )
    return theme


def stylesheet(brand: str) -> str:
    """The CSS for one brand colour, as `brand_color` serves it."""
    return generate([brand]).css()
