"""Inline SVG charts for printable reports: no script, no external resource, prints as drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2f6f9f", "#b3261e", "#1f7a3a", "#9a6700", "#6a4c93", "#56606b", "#0f766e")
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 44


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 × 10^k)."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def _fmt(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def _frame(
    title: str, labels: Sequence[str], top: float, plot_w: float, plot_h: float
) -> list[str]:
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


def _legend(names: Sequence[str], plot_h: float) -> list[str]:
    parts = []
    x = LEFT
    y = TOP + plot_h + 34
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{y}" class="tick">{escape(name)}</text>'
        )
        x += 24 + 12 * len(name)
    return parts


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """Grouped bars of one or more series over the same labels, as an ``<svg>`` element."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((v for vals in series.values() for v in vals), default=0))
    parts = _frame(title, labels, top, plot_w, plot_h)
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
    parts += _legend(list(series), plot_h)
    return _svg(title, parts)


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """Lines of one or more series over the same labels, as an ``<svg>`` element."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((v for vals in series.values() for v in vals), default=0))
    parts = _frame(title, labels, top, plot_w, plot_h)
    n = max(len(labels), 1)
    for j, (name, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        points = " ".join(
            f"{LEFT + plot_w * (i + 0.5) / n:.1f},{TOP + plot_h - plot_h * v / top:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2">'
            f"<title>{escape(name)}</title></polyline>"
        )
    parts += _legend(list(series), plot_h)
    return _svg(title, parts)


def _svg(title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">' + "".join(parts) + "</svg>"
    )
