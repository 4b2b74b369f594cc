"""Declared number formats keep their text per value only where the value alone decides it."""

from __future__ import annotations

from decimal import Decimal

from app.admin.values import _number_formatter, number_formatter


def test_kept_texts_equal_fresh_ones_for_every_kind_of_value() -> None:
    values = [
        Decimal("10.5"), Decimal("10.50"), Decimal("1E+1"), Decimal("10"), Decimal("-3.005"),
        Decimal("0.00"), Decimal("-0.00"), Decimal("0"), Decimal("-0"),
        Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
        Decimal("1E+30"), Decimal("1000000000000000000000000000000"), Decimal("123456789.125"),
        12, -0.0, 0.0, 2.5, True, None, "n/a",
    ]  # fmt: skip
    for spec in ("money:EUR", "money:JPY", "money:XYZ", "decimal:3", "integer", "percent"):
        kind, _, arg = spec.partition(":")
        fresh = _number_formatter(kind, arg)
        kept = number_formatter(spec)
        assert number_formatter(spec) is kept  # one per spec: what it keeps lasts
        for _ in range(2):  # first drawn, then (where allowed) kept
            for v in values:
                assert kept(v) == fresh(v), (spec, v)
    # Equal values that print apart are never served each other's text.
    money = number_formatter("money:EUR")
    assert money(Decimal("0.00")) == "€0.00" and money(Decimal("-0.00")) == "−€0.00"
    assert money(Decimal("1E+30")) != money(Decimal("1000000000000000000000000000000"))
    assert money(Decimal("sNaN")) == _number_formatter("money", "EUR")(Decimal("sNaN"))
