"""A small SVG chart, written by hand (no plotting dependency): median µs per resource against entries per
file (1 = the valid single resources in rotation, then each Bundle size), one line per contender, both axes
logarithmic."""
from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

from bench.figures import ROTATION

WIDTH, HEIGHT = 800, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 270, 40, 50
COLOURS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#7b4b94", "#6c757d", "#00798c")


def _points(run: dict[str, Any]) -> list[tuple[int, float]]:
    """One point per entries count: the singles are the valid ones in rotation (each call another document, as a
    Bundle's entries are) when the run has them, else the valid ones each repeated."""
    sizes = run.get("sizes", {})
    skip = {"1 (invalid)", "agreed", "1" if ROTATION in sizes else ROTATION}
    return sorted((row["entries"], row["median_us"]) for key, row in sizes.items()
                  if key not in skip and row["median_us"] > 0)


def _decades(low: float, high: float) -> list[float]:
    return [10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def svg(title: str, runs: dict[str, dict[str, Any]]) -> str:
    series = [(run["contender"], _points(run)) for run in runs.values() if run["status"] == "ran"]
    series = [(name, pts) for name, pts in series if pts]
    xs = [x for _, pts in series for x, _ in pts] or [1, 1000]
    ys = [y for _, pts in series for _, y in pts] or [1, 1000]
    xt, yt = _decades(min(xs), max(xs)), _decades(min(ys), max(ys))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        lo, hi = math.log10(xt[0]), math.log10(xt[-1])
        return LEFT + (math.log10(x) - lo) / ((hi - lo) or 1) * plot_w

    def py(y: float) -> float:
        lo, hi = math.log10(yt[0]), math.log10(yt[-1])
        return TOP + plot_h - (math.log10(y) - lo) / ((hi - lo) or 1) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="14">{escape(title)}</text>']
    for x in xt:
        out.append(f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{TOP + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{px(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{x:,.0f}</text>')
    for y in yt:
        out.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + plot_w}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_label(y)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">entries per file '
               f'(1 = single resources; Bundles)</text>')
    out.append(f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               f'median µs per resource</text>')
    for i, (name, pts) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        ly = TOP + 10 + 20 * i
        out.append(f'<line x1="{WIDTH - RIGHT + 15}" y1="{ly}" x2="{WIDTH - RIGHT + 35}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 40}" y="{ly + 4}">{escape(name.split(" (")[0][:36])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
