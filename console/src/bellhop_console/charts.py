"""A 24 h history chart as inline SVG, drawn on the server: no script, no CDN.

The SVG has a title and a description (the range and the last value) so a
screen reader gets the gist; the numbers are also in the page as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bellhop_sdk import TelemetryPoint
from markupsafe import Markup, escape

__all__ = ["Chart", "chart"]

WIDTH, HEIGHT, PAD = 600, 140, 28


@dataclass(frozen=True)
class Chart:
    metric: str
    points: int
    low: float | None
    high: float | None
    last: float | None
    svg: Markup


def chart(metric: str, points: Sequence[TelemetryPoint], until: datetime) -> Chart:
    """`points` over the 24 h before `until`, scaled to fit; empty when there are none."""
    since = until - timedelta(hours=24)
    title = escape(f"{metric}, last 24 hours")
    if not points:
        svg = Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}: no data">'
            '<text x="{x}" y="{y}" class="chart-empty">no data in the last 24 h</text></svg>'
        ).format(w=WIDTH, h=HEIGHT, t=title, x=PAD, y=HEIGHT // 2)
        return Chart(metric, 0, None, None, None, svg)
    values = [p.value for p in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    total = (until - since).total_seconds()

    def xy(p: TelemetryPoint) -> str:
        x = PAD + (WIDTH - 2 * PAD) * max(0.0, (p.at - since).total_seconds()) / total
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * (p.value - low) / span
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(p) for p in sorted(points, key=lambda p: p.at))
    last = sorted(points, key=lambda p: p.at)[-1].value
    desc = escape(f"{len(points)} points from {low:g} to {high:g}; last {last:g}")
    svg = Markup(
        '<svg class="chart" viewBox="0 0 {w} {vh}" role="img" aria-label="{t}">'
        "<title>{t}</title><desc>{d}</desc>"
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" class="chart-axis"/>'
        '<text x="2" y="{tp}" class="chart-label">{hi}</text>'
        '<text x="2" y="{b}" class="chart-label">{lo}</text>'
        '<text x="{p}" y="{h}" class="chart-label">-24 h</text>'
        '<text x="{nx}" y="{h}" class="chart-label">now</text>'
        '<polyline points="{line}" class="chart-line" fill="none"/></svg>'
    ).format(
        w=WIDTH,
        vh=HEIGHT,
        h=HEIGHT - 4,
        t=title,
        d=desc,
        p=PAD,
        b=HEIGHT - PAD,
        r=WIDTH - PAD,
        tp=PAD,
        hi=f"{high:g}",
        lo=f"{low:g}",
        nx=WIDTH - PAD - 20,
        line=line,
    )
    return Chart(metric, len(points), low, high, last, svg)
