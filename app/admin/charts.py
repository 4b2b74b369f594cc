"""Small charts drawn on the server as SVG: no script, no library, colours from the stylesheet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 160
TOP, BOTTOM, LEFT = 18, 22, 4  # room for the value above a bar and the day below it


def bar_chart(days: Sequence[tuple[date, int]], *, what: str = "events") -> Markup:
    """Bars per day with each count above its bar and the weekday and date below, as one
    `role="img"` SVG named by a sentence; the numbers are also text for screen readers."""
    if not days:
        return Markup("")
    n = len(days)
    peak = max(c for _d, c in days) or 1
    slot = (WIDTH - LEFT * 2) / n
    bar = min(slot * 0.62, 44)
    usable = HEIGHT - TOP - BOTTOM
    total = sum(c for _d, c in days)
    label = f"{total:,} {what} in the last {n} days; " + "; ".join(
        f"{d.strftime('%a %d %b')}: {c:,}" for d, c in days
    )
    parts = [
        f'<svg class="k-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" focusable="false">',
        f'<line class="k-chart-axis" x1="0" x2="{WIDTH}" y1="{HEIGHT - BOTTOM}" '
        f'y2="{HEIGHT - BOTTOM}"/>',
    ]
    for i, (day, count) in enumerate(days):
        h = 0.0 if count == 0 else max(2.0, usable * count / peak)
        x = LEFT + i * slot + (slot - bar) / 2
        y = HEIGHT - BOTTOM - h
        cx = x + bar / 2
        today = " k-chart-bar--today" if i == n - 1 else ""
        parts.append(
            f'<rect class="k-chart-bar{today}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" rx="3"/>'
        )
        parts.append(
            f'<text class="k-chart-value" x="{cx:.1f}" y="{y - 5:.1f}" text-anchor="middle">'
            f"{count:,}</text>"
        )
        parts.append(
            f'<text class="k-chart-day" x="{cx:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{escape(day.strftime('%a %d'))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only
