"""Charts as inline SVG, drawn here: no script, no external file, nothing for a
content security policy to allow. Each chart is an <svg role="img"> with a title
and a description that states its figures, and each bar has a <title> (its value,
shown when pointed at)."""

from __future__ import annotations

import datetime
from html import escape

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 42
MAX_BARS = 92  # beyond this many days, bars are weeks

PALETTE = ("#3a6ea5", "#e07a2e", "#5a9e6f", "#b5477e", "#8c6bb1", "#c9a227", "#4aa3b8", "#7f7f7f")


def days_between(first: str, last: str) -> list[str]:
    start, end = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    return [(start + datetime.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def binned(per_day: dict[str, dict[str, int]], days: list[str]) -> tuple[list[str], list[dict[str, int]], bool]:
    """(labels, values) per day, or per week (starting Mondays) when there are too many
    days for one bar each; the flag says weeks."""
    if len(days) <= MAX_BARS:
        return days, [per_day.get(day, {}) for day in days], False
    labels: list[str] = []
    values: list[dict[str, int]] = []
    for day in days:
        date = datetime.date.fromisoformat(day)
        monday = (date - datetime.timedelta(days=date.weekday())).isoformat()
        if not labels or labels[-1] != monday:
            labels.append(monday)
            values.append({})
        for key, n in per_day.get(day, {}).items():
            values[-1][key] = values[-1].get(key, 0) + n
    return labels, values, True


def _nice_max(value: int) -> int:
    """The top of the axis: 1, 2, 4, 10, 20, 50, 100, ... (its half is a whole number from 2 on)."""
    for small in (1, 2, 4, 10):
        if value <= small:
            return small
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def stacked_bars(chart_id: str, title: str, labels: list[str], values: list[dict[str, int]],
                 series: list[tuple[str, str, str]], fmt, week_word: str = "") -> str:
    """`series`: (key, legend text, colour), stacked bottom to top. `fmt` writes a number."""
    top = _nice_max(max((sum(v.get(key, 0) for key, _, _ in series) for v in values), default=0))
    left = max(LEFT, 12 + 7 * len(fmt(top)))  # room for the longest axis label (11 px text)
    plot_w, plot_h = WIDTH - left - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    bar_w = max(1.0, slot * 0.8)
    parts = [f'<svg id="{chart_id}" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{chart_id}-t">{escape(title)}</title>']
    totals = {key: sum(v.get(key, 0) for v in values) for key, _, _ in series}
    parts.append(f'<desc id="{chart_id}-d">' + escape("; ".join(f"{name}: {fmt(totals[key])}"
                                                                for key, name, _ in series)) + "</desc>")
    for fraction in ((0, 0.5, 1) if top > 1 else (0, 1)):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
                     f'{escape(fmt(round(top * fraction)))}</text>')
    for i, (label, value) in enumerate(zip(labels, values)):
        x = left + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        tip = escape(f"{week_word} {label}".strip() + ": " + ", ".join(
            f"{name} {fmt(value.get(key, 0))}" for key, name, _ in series))
        parts.append(f'<g class="bar"><title>{tip}</title>')
        drawn = False
        for key, _name, colour in series:
            n = value.get(key, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}" '
                         f'data-key="{escape(key)}" data-value="{n}"/>')
            drawn = True
        if not drawn:  # an invisible target, so that the day's tooltip still exists
            parts.append(f'<rect x="{x:.1f}" y="{TOP}" width="{bar_w:.1f}" height="{plot_h}" fill="transparent"/>')
        parts.append("</g>")
    step = max(1, len(labels) // 6)
    for i in range(0, len(labels), step):
        x = left + i * slot + slot / 2
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" class="axis" text-anchor="middle">'
                     f'{escape(labels[i][5:])}</text>')
    legend_x = left
    for key, name, colour in series:
        parts.append(f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" class="legend">{escape(name)}</text>')
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(chart_id: str, title: str, rows: list[tuple[str, int]], colour: str, fmt) -> str:
    """One bar per row (label, value): a distribution."""
    row_h, label_w, width = 22, 110, WIDTH
    height = TOP + row_h * len(rows) + 8
    top = max((n for _, n in rows), default=0) or 1
    parts = [f'<svg id="{chart_id}" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{chart_id}-t">{escape(title)}</title>',
             f'<desc id="{chart_id}-d">' + escape("; ".join(f"{label}: {fmt(n)}" for label, n in rows)) + "</desc>"]
    plot_w = width - label_w - 80
    for i, (label, n) in enumerate(rows):
        y = TOP + i * row_h
        w = plot_w * n / top
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" class="axis" text-anchor="end">{escape(label)}</text>'
                     f'<g class="bar"><title>{escape(label)}: {escape(fmt(n))}</title>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0.5 if n else 0):.1f}" height="{row_h - 6}" '
                     f'fill="{colour}" data-value="{n}"/></g>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="axis">{escape(fmt(n))}</text>')
    parts.append("</svg>")
    return "".join(parts)
