"""The theme engine: WCAG maths against published values, every generated pair, the CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import theme
from tests.helpers import keel

# ---- the formulas against published figures ---------------------------------------------


def test_white_on_black_is_21_to_1() -> None:
    assert theme.contrast("#ffffff", "#000000") == pytest.approx(21.0)
    assert theme.contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert theme.contrast("#3b5bdb", "#3b5bdb") == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("fg", "bg", "ratio"),
    [
        # WebAIM's contrast checker and the WCAG understanding documents' examples.
        ("#767676", "#ffffff", 4.54),  # the lightest grey that passes AA on white
        ("#777777", "#ffffff", 4.48),  # one step lighter fails
        ("#595959", "#ffffff", 7.0),  # AAA on white
        ("#0000ff", "#ffffff", 8.59),
        ("#ff0000", "#ffffff", 4.0),
    ],
)
def test_contrast_matches_published_pairs(fg: str, bg: str, ratio: float) -> None:
    assert round(theme.contrast(fg, bg), 2) == ratio


def test_relative_luminance_formula() -> None:
    assert theme.relative_luminance("#ffffff") == pytest.approx(1.0)
    assert theme.relative_luminance("#000000") == 0.0
    # Pure primaries weigh by the WCAG coefficients.
    assert theme.relative_luminance("#ff0000") == pytest.approx(0.2126)
    assert theme.relative_luminance("#00ff00") == pytest.approx(0.7152)
    assert theme.relative_luminance("#0000ff") == pytest.approx(0.0722)
    # The linear segment below 0.04045 (10/255 = 0.0392): c / 12.92.
    assert theme.relative_luminance("#0a0a0a") == pytest.approx((10 / 255) / 12.92)


def test_oklch_round_trip_keeps_the_colour() -> None:
    for colour in ("#3b5bdb", "#c4302b", "#0f766e", "#ffd400", "#777777"):
        assert theme.from_oklch(*theme.oklch(colour)) == colour


@pytest.mark.parametrize("text", ["red", "#12345", "#1234567", "#ggggggg", "", "rgb(0,0,0)"])
def test_bad_colours_are_refused(text: str) -> None:
    with pytest.raises(theme.ColourError):
        theme.parse_hex(text)


def test_short_and_upper_case_forms_are_normalised() -> None:
    assert theme.parse_hex("#ABC") == "#aabbcc"
    assert theme.parse_hex(" 0F766E ") == "#0f766e"


# ---- every generated pair meets its ratio -------------------------------------------------


def _assert_all_pass(t: theme.Theme) -> None:
    checks = t.checks()
    assert {c.theme for c in checks} == {"light", "dark"}
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    for c in checks:  # recompute from the tokens themselves, not the report's rounding
        values = {**theme.NEUTRALS[c.theme], **t.tokens(c.theme)}
        assert theme.contrast(values[c.fg], values[c.bg]) >= c.need, c


hex_colour = st.integers(0, 0xFFFFFF).map(lambda n: f"#{n:06x}")


@settings(max_examples=50, deadline=None)
@given(hex_colour)
def test_every_pair_meets_its_ratio_for_random_brands(brand: str) -> None:
    _assert_all_pass(theme.generate([brand]))


@settings(max_examples=10, deadline=None)
@given(st.lists(hex_colour, min_size=2, max_size=3))
def test_accents_meet_their_ratios_too(brands: list[str]) -> None:
    t = theme.generate(brands)
    _assert_all_pass(t)
    assert "accent-2" in t.light and "on-accent-2" in t.dark


@pytest.mark.parametrize("brand", ["#000000", "#ffffff", "#ffd400", "#777777", "#3b5bdb"])
def test_extreme_and_awkward_brands(brand: str) -> None:
    t = theme.generate([brand])
    _assert_all_pass(t)
    for tokens in (t.light, t.dark):
        assert tokens["brand-hover"] != tokens["brand"] or brand == "#000000"


def test_keels_own_brand_needs_no_repair() -> None:
    t = theme.generate(["#3b5bdb"])
    assert t.light["brand"] == "#3b5bdb" and t.light["on-brand"] == "#ffffff"
    assert t.light["brand-text"] == "#3451c7"
    assert not any("moved" in n or "tamed" in n for n in t.notes)


@pytest.mark.parametrize("vivid", ["#00ff00", "#ff00ff"])
def test_vivid_colours_are_tamed_not_refused(vivid: str) -> None:
    t = theme.generate([vivid])
    assert theme.oklch(vivid)[1] > theme.CHROMA_CAP
    assert any(n.startswith(f"{vivid} tamed") for n in t.notes)
    for tokens in (t.light, t.dark):
        for name in ("brand", "brand-hover", "brand-active", "brand-text", "focus"):
            assert theme.oklch(tokens[name])[1] <= theme.CHROMA_CAP + 0.005, (name, tokens[name])
        # Same family: the hue survives the taming.
        assert theme.hue_distance(theme.oklch(tokens["brand"])[2], theme.oklch(vivid)[2]) < 6
    _assert_all_pass(t)


def test_a_red_brand_turns_danger_away_from_it() -> None:
    t = theme.generate(["#c4302b"])  # Keel's own danger red as the brand
    danger_hue = theme.oklch(t.light["danger"])[2]
    assert theme.hue_distance(danger_hue, theme.oklch("#c4302b")[2]) >= theme.HUE_GAP - 1
    # …but it is still a red, not an orange that looks like "warning".
    assert theme.hue_distance(danger_hue, theme.oklch("#c4302b")[2]) <= theme.HUE_DRIFT
    assert any(n.startswith("danger turned") for n in t.notes)
    _assert_all_pass(t)


def test_a_grey_brand_turns_nothing() -> None:
    t = theme.generate(["#555555"])
    assert not any("turned" in n for n in t.notes)


def test_css_overrides_each_theme_with_keel_css_selectors() -> None:
    css = theme.generate(["#0f766e"]).css()
    assert css.count("--keel-brand:") == 3  # light, dark by preference, dark by choice
    assert ':root[data-theme="dark"], :root:has(#k-theme-dark:checked)' in css
    assert ':root:not([data-theme="light"]):not(:has(#k-theme-light:checked))' in css
    assert "--keel-focus-ring: 0 0 0 3px rgb(" in css
    # Only tokens keel.css defines (plus accents): a typo would silently do nothing.
    import re
    from pathlib import Path

    keel_css = (Path(__file__).parents[1] / "app/web/static/keel.css").read_text()
    defined = set(re.findall(r"(--keel-[a-z0-9-]+):", keel_css))
    used = set(re.findall(r"(--keel-[a-z0-9-]+):", css))
    assert used <= defined


# ---- the command --------------------------------------------------------------------------


def test_generate_prints_a_table_and_writes_the_file(tmp_path) -> None:
    out = tmp_path / "theme.css"
    proc = keel("theme", "generate", "--brand", "#0f766e", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "--keel-on-brand on --keel-brand" in proc.stdout
    assert "pairs meet WCAG 2.2 contrast" in proc.stdout
    assert out.read_text() == theme.generate(["#0f766e"]).css()


def test_generate_json_for_scripts() -> None:
    proc = keel("theme", "generate", "--brand", "#ff00ff", "--brand", "#00ff00", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["brands"] == ["#ff00ff", "#00ff00"]
    assert all(c["ok"] and c["ratio"] >= c["need"] for c in report["checks"])
    assert any("tamed" in n for n in report["notes"])
    assert report["tokens"]["dark"]["accent-2"]


@pytest.mark.parametrize("bad", ["red", "#12345"])
def test_bad_brand_is_a_usage_error(bad: str) -> None:
    proc = keel("theme", "generate", "--brand", bad)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Problem: brand colour")
    assert "Why: " in proc.stderr and "Fix: " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_brand_color_setting_is_validated() -> None:
    from app.config import load_config
    from app.errors import ConfigError

    assert load_config(env={}, flags={"brand_color": "#0F766E"}).brand_color == "#0f766e"
    assert load_config(env={}, flags={}).brand_color == ""
    with pytest.raises(ConfigError, match="brand_color"):
        load_config(env={}, flags={"brand_color": "teal"})
