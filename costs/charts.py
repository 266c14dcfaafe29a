"""Cost per day as an inline SVG: drawn on the server, no JavaScript, no CDN."""

from __future__ import annotations

import math
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from costs.reports import spend_by_day_and_model

COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]
WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 230, 12, 28
# The legend's room for "name $amount" at font-size 10: 26 px go to the swatch, and a wide
# character is ~6 px, so a line of LEGEND_CHARS never reaches the edge and its amount is whole.
LEGEND_CHARS = 33
LABEL_EVERY = 7  # days between labels on the day axis


def nice_ceiling(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def cost_chart_svg(days: int = 30) -> SafeString:
    """Stacked bars of cost per UTC day for the top models and 'other', with axes and a legend."""
    day_list, series = spend_by_day_and_model(days)
    totals = [sum((values[i] for _, values in series), Decimal(0)) for i in range(len(day_list))]
    top = nice_ceiling(float(max(totals, default=Decimal(0))))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / max(len(day_list), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cost-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="Cost per day, last {days} days, by model">',
        f"<title>Cost per day (USD), last {days} days, by model</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc" stroke-width="0.5"/>'
        )
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="currentColor">${top * fraction:,.2f}</text>'
        )
    for i, day in enumerate(day_list):
        base = 0.0
        x = LEFT + i * bar_w
        for index, (name, values) in enumerate(series):
            value = float(values[i])
            if value <= 0:
                continue
            h = plot_h * value / top
            y = TOP + plot_h - base - h
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[index % len(COLOURS)]}"><title>{day.isoformat()} {escape(name)}: ${values[i]:.4f}</title></rect>'
            )
            base += h
        # Counted back from the last day: it is always labelled, and no label crowds it.
        if (len(day_list) - 1 - i) % LABEL_EVERY == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="10" fill="currentColor">{day:%m-%d}</text>'
            )
    for index, (name, values) in enumerate(series):
        y = TOP + 14 * index + 8
        total = sum(values, Decimal(0))
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 8}" width="10" height="10" fill="{COLOURS[index % len(COLOURS)]}"/>'
        )
        amount = f"${total:,.2f}"
        room = LEGEND_CHARS - len(amount) - 1  # the amount is never cut: the name gives way
        label = name if len(name) <= room else name[: max(room - 1, 1)] + "…"
        parts.append(
            f'<text x="{WIDTH - RIGHT + 26}" y="{y + 1}" font-size="10" fill="currentColor">{escape(label)} {amount}</text>'
        )
    if not series:
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" font-size="12" fill="currentColor">No usage in the last {days} days</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
