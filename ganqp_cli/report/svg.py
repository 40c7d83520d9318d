"""Small line plots as inline SVG: axes with round ticks, a log y axis when the values span
orders of magnitude, one polyline per series. No script, no font or file from elsewhere:
the page that holds them opens from disk, prints, and stays small (long series are thinned
to `MAX_POINTS`, coordinates rounded to a tenth of a pixel)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

MAX_POINTS = 200
# Colour-blind-safe qualitative colours (Okabe and Ito), then darker variants.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#005a8c", "#b37b00", "#006e52", "#a34700", "#995b7d", "#3b7ea1"]


@dataclass
class Series:
    label: str                        # shown on hover (the run)
    color: str
    points: list[tuple[float, float]]
    key: str = ""                     # data-run attribute: which run drew it


def thin(points: list[tuple[float, float]], most: int = MAX_POINTS
         ) -> list[tuple[float, float]]:
    """At most `most` points, evenly spaced in index, the first and last kept."""
    if len(points) <= most:
        return points
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw / 1.5)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 12)
            for i in range(int(math.ceil((hi - first) / step - 1e-9)) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten (with 2 and 5 between them when the span is short) covering [lo, hi]."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if b - a <= 3 else (1,)
    return [m * 10.0 ** e for e in range(a, b + 1) for m in mults
            if lo / 1.001 <= m * 10.0 ** e <= hi * 1.001] or [lo, hi]


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:.4g}"


def _range(vals: list[float], log: bool) -> tuple[float, float]:
    lo, hi = min(vals), max(vals)
    if lo == hi:
        return (lo / 2, hi * 2) if log else (lo - 1, hi + 1) if lo == 0 else (
            lo - abs(lo) / 2, hi + abs(hi) / 2)
    return lo, hi


def use_log(ys: list[float]) -> bool:
    return bool(ys) and min(ys) > 0 and max(ys) / min(ys) >= 20


def plot(series: list[Series], x_label: str, y_label: str, width: int = 330,
         height: int = 220, title: str = "") -> str:
    """One figure: every series as a polyline on shared axes; "no data" if none has any."""
    pts = [p for s in series for p in s.points]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" class="plot" '
            f'aria-label="{escape(title or y_label)} against {escape(x_label)}">')
    if not pts:
        return (head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                f'class="empty">no {escape(y_label)} logged</text></svg>')
    log = use_log([y for _, y in pts])
    x0, x1 = _range([x for x, _ in pts], False)
    y0, y1 = _range([y for _, y in pts], log)
    left, right, top, bottom = 52, 14, 18 if title else 8, 34
    w, h = width - left - right, height - top - bottom
    xt = [t for t in nice_ticks(x0, x1) if x0 <= t <= x1] or [x0, x1]
    yt = log_ticks(y0, y1) if log else [t for t in nice_ticks(y0, y1) if y0 <= t <= y1]
    f = (lambda y: math.log10(y)) if log else (lambda y: y)
    ly0, ly1 = f(y0), f(y1)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def py(y: float) -> float:
        return top + h - (f(y) - ly0) / (ly1 - ly0) * h

    out = [head]
    if title:
        out.append(f'<text x="{left}" y="12" class="title">{escape(title)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" class="frame"/>')
    for t in xt:
        x = round(px(t), 1)
        out.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + h}" class="grid"/>'
                   f'<text x="{x}" y="{top + h + 12}" text-anchor="middle">{fmt(t)}</text>')
    for t in yt:
        y = round(py(t), 1)
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + w}" y2="{y}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 3}" text-anchor="end">{fmt(t)}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 4}" text-anchor="middle" '
               f'class="label">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(11 {top + h / 2}) rotate(-90)" '
               f'text-anchor="middle" class="label">{escape(y_label)}'
               f'{" (log)" if log else ""}</text>')
    for s in series:
        if not s.points:
            continue
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in thin(s.points))
        one = len(s.points) == 1
        shape = (f'<circle cx="{coords.split(",")[0]}" cy="{coords.split(",")[1]}" r="2.5" '
                 f'fill="{s.color}"' if one else
                 f'<polyline points="{coords}" fill="none" stroke="{s.color}"')
        out.append(f'{shape} data-run="{escape(s.key)}"><title>{escape(s.label)}</title>'
                   f'{"</circle>" if one else "</polyline>"}')
    out.append("</svg>")
    return "".join(out)
