"""Inline SVG charts for printable reports: no script, no external resource, prints as drawn."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2f6f9f", "#b3261e", "#1f7a3a", "#9a6700", "#6a4c93", "#56606b", "#0f766e")
WIDTH, PLOT_HEIGHT = 640, 148
LEFT, RIGHT, TOP = 48, 12, 28
LEGEND_ROW = 16
Series = Mapping[str, Sequence[float | None]]


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``: four steps of 1, 2 or 5 × 10^k (at least 1)."""
    raw = max(value / 4, 1.0)
    step = 1.0
    while step * 10 <= raw:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= raw:
            return 4 * m * step
    return 40 * step


def _fmt(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def _text_width(text: str) -> float:
    """Rough width at the 10px tick font: wide (CJK) characters count double."""
    return sum(11 if unicodedata.east_asian_width(c) in "WF" else 6 for c in text)


def _top(series: Series) -> float:
    return _nice_max(max((v for vals in series.values() for v in vals if v is not None), default=0))


def _frame(title: str, labels: Sequence[str], top: float) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT
    parts = [f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>']
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{_fmt(top * i / 4)}</text>"
        )
    n = max(len(labels), 1)
    every = max(1, (n + 7) // 8)
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + plot_w * (i + 0.5) / n
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" class="tick">'
            f"{escape(label[5:] if len(label) == 10 else label)}</text>"
        )
    return parts


def _legend(names: Sequence[str]) -> tuple[list[str], int]:
    """Legend entries, wrapped to the chart's width; also the number of rows."""
    parts = []
    x, row = float(LEFT), 0
    for i, name in enumerate(names):
        w = 14 + _text_width(name) + 14
        if x + w > WIDTH - RIGHT and x > LEFT:
            x, row = float(LEFT), row + 1
        y = TOP + PLOT_HEIGHT + 34 + row * LEGEND_ROW
        parts.append(
            f'<rect x="{x:.0f}" y="{y - 9}" width="10" height="10" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 14:.0f}" y="{y}" class="tick">{escape(name)}</text>'
        )
        x += w
    return parts, row + 1


def bar_chart(title: str, labels: Sequence[str], series: Series) -> str:
    """Grouped bars of one or more series over the same labels, as an ``<svg>`` element."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT
    top = _top(series)
    parts = _frame(title, labels, top)
    n = max(len(labels), 1)
    k = max(len(series), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.8 / k, 0.5)
    for j, (name, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(values):
            if not v:
                continue
            h = plot_h * v / top
            x = LEFT + slot * i + slot * 0.1 + bar_w * j
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(name)} {escape(labels[i])}: '
                f"{_fmt(v)}</title></rect>"
            )
    return _svg(title, parts, list(series))


def line_chart(title: str, labels: Sequence[str], series: Series) -> str:
    """Lines of one or more series over the same labels (None leaves a gap), as ``<svg>``."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PLOT_HEIGHT
    top = _top(series)
    parts = _frame(title, labels, top)
    n = max(len(labels), 1)
    for j, (name, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(
                f"{LEFT + plot_w * (i + 0.5) / n:.1f},{TOP + plot_h - plot_h * v / top:.1f}"
            )
        for run in runs:
            if run:
                parts.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                    f'stroke-width="2"><title>{escape(name)}</title></polyline>'
                )
    return _svg(title, parts, list(series))


def _svg(title: str, parts: list[str], names: Sequence[str]) -> str:
    legend, rows = _legend(names)
    height = TOP + PLOT_HEIGHT + 24 + rows * LEGEND_ROW
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(title)}">' + "".join(parts + legend) + "</svg>"
    )
