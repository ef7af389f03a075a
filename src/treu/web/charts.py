"""Charts as server-rendered SVG: no script, no chart library, nothing to download, and
they print. Colours come from the style sheet (classes ``s0``, ``s1``, …), because the
pages' Content-Security-Policy allows no inline styles; SVG's presentation attributes
(position, size) are not styles.

Each chart is an ``<svg role="img">`` with a ``<title>`` naming it and every bar with a
``<title>`` of its own (a tooltip, and what a screen reader announces), followed on the
page by the same figures as a table (``templates/chart.html``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, BOTTOM, TOP, RIGHT = 56, 28, 12, 8


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[int]


def _step(top: int) -> int:
    """The value between two of the axis's four grid lines: 1, 2, 3, 4, 5, 6 or 8 times a
    power of ten, so that four of them reach ``top`` and every line is a round number."""
    need = max(-(-top // 4), 1)
    power = 1
    while power * 10 <= need:
        power *= 10
    for step in (1, 2, 3, 4, 5, 6, 8, 10):
        if step * power >= need:
            return step * power
    return 10 * power


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    number: Callable[[int], str] = str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """Grouped bars: one group per label, one bar per series."""
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    step = _step(max((max(s.values, default=0) for s in series), default=0))
    top = 4 * step
    groups = max(len(labels), 1)
    group_w = plot_w / groups
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" data-testid="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(5):
        value = step * tick
        y = TOP + plot_h - plot_h * tick / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(number(value))}</text>"
        )
    every = max(1, groups // 8)  # at most about eight labels under the axis
    for g, label in enumerate(labels):
        x0 = LEFT + g * group_w + group_w * 0.1
        for s, one in enumerate(series):
            value = one.values[g] if g < len(one.values) else 0
            h = plot_h * value / top if top else 0
            x = x0 + s * bar_w
            parts.append(
                f'<rect class="s{s}" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}">'
                f"<title>{escape(label)} · {escape(one.name)}: {escape(number(value))}</title>"
                "</rect>"
            )
        if g % every == 0:
            parts.append(
                f'<text class="axis" x="{LEFT + g * group_w + group_w / 2:.1f}" '
                f'y="{height - 8}" text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
