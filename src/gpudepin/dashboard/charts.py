"""Small inline SVG charts: the page must work with no network, so nothing is fetched from
a CDN; every point carries a ``<title>`` so hovering shows its value."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD_L, PAD_B, PAD_T = 560, 180, 46, 22, 10
COLORS = ("#2f6fde", "#e0782f", "#2c9c5a", "#b23b8f")


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _frame(
    title: str,
    top: float,
    body: str,
    labels: Sequence[str],
    xs: Sequence[float],
    legend: Sequence[str],
) -> str:
    grid = ""
    for i in range(3):
        y = PAD_T + (H - PAD_T - PAD_B) * i / 2
        grid += (
            f'<line x1="{PAD_L}" x2="{W}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(top * (1 - i / 2))}</text>"
        )
    ticks = ""
    if labels:
        step = max(1, len(labels) // 6)
        for i in range(0, len(labels), step):
            x = xs[i]
            ticks += (
                f'<text x="{x:.1f}" y="{H - 6}" text-anchor="middle">{escape(labels[i])}</text>'
            )
    keys = "".join(
        f'<tspan fill="{COLORS[i % len(COLORS)]}">&#9632; {escape(name)}</tspan> '
        for i, name in enumerate(legend)
    )
    return (
        f'<figure class="chart"><figcaption>{escape(title)} <small>{keys}</small></figcaption>'
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
        f"{grid}{ticks}{body}</svg></figure>"
    )


def _empty(title: str, why: str) -> str:
    return (
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<p class="none">{why}</p></figure>'
    )


def _x(i: int, n: int) -> float:
    span = W - PAD_L - 10
    return PAD_L + 5 + (span * i / (n - 1) if n > 1 else span / 2)


def _y(v: float, top: float) -> float:
    return PAD_T + (H - PAD_T - PAD_B) * (1 - (v / top if top else 0))


def line_chart(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    top: float | None = None,
) -> str:
    """Lines over shared x labels; ``top`` fixes the y maximum (e.g. 1 for a share)."""
    if not labels:
        return _empty(title, "no samples yet")
    peak = top or max((max(v, default=0.0) for v in series.values()), default=0.0) or 1.0
    body = ""
    for k, (name, values) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        pts = " ".join(f"{_x(i, len(values)):.1f},{_y(v, peak):.1f}" for i, v in enumerate(values))
        body += f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>'
        for i, v in enumerate(values):
            body += (
                f'<circle cx="{_x(i, len(values)):.1f}" cy="{_y(v, peak):.1f}" r="2.5" '
                f'fill="{color}"><title>{escape(labels[i])}: {escape(name)} {_fmt(v)}</title>'
                "</circle>"
            )
    xs = [_x(i, len(labels)) for i in range(len(labels))]
    return _frame(title, peak, body, labels, xs, list(series))


def bar_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float]]) -> str:
    """Grouped bars, one group per label."""
    if not labels:
        return _empty(title, "no data yet")
    peak = max((max(v, default=0.0) for v in series.values()), default=0.0) or 1.0
    n, k = len(labels), max(1, len(series))
    group = (W - PAD_L - 10) / n
    width = max(1.0, group * 0.8 / k)
    body = ""
    for j, (name, values) in enumerate(series.items()):
        for i, v in enumerate(values):
            x = PAD_L + 5 + i * group + group * 0.1 + j * width
            y = _y(v, peak)
            body += (
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{H - PAD_B - y:.1f}" fill="{COLORS[j % len(COLORS)]}">'
                f"<title>{escape(labels[i])}: {escape(name)} {_fmt(v)}</title></rect>"
            )
    xs = [PAD_L + 5 + (i + 0.5) * group for i in range(n)]
    return _frame(title, peak, body, labels, xs, list(series))
