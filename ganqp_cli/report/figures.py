"""The curves of a block: every metric of fid.jsonl and every number of metrics.jsonl,
each against iterations, real images drawn and training time, all runs of the block in one
figure (one colour per configuration, one line per run).

The equal-time figure is the one that answers a cost claim: an objective that is cheaper
per iteration gets further along its x axis in the same seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ganqp_cli.report import stats, svg
from ganqp_cli.report.runs import Run
from ganqp_cli.report.table import Row

# Points drawn per figure at most, shared among its lines (a thousand runs stay light).
POINT_BUDGET = 20000
# The first curves of metrics.jsonl; the objective's own statistics follow in logged order.
FIRST = ("d_loss", "g_loss")

AXES: list[tuple[str, str, Callable[[Run], dict[int, float] | None]]] = [
    ("iteration", "generator iteration", lambda run: None),
    ("kimg", "real images drawn (thousands)", stats.image_axis),
    ("time", "training time (s)", stats.time_axis),
]


@dataclass
class Figure:
    key: str           # the metric or loss
    source: str        # "eval" (fid.jsonl) or "train" (metrics.jsonl)
    svgs: list[str]    # one per axis of AXES


def color(i: int) -> str:
    if i < len(svg.PALETTE):
        return svg.PALETTE[i]
    return f"hsl({(i * 137.508) % 360:.0f},60%,38%)"  # golden-angle hues past the palette


def keys_of(rows: list[Row]) -> tuple[list[str], list[str]]:
    """(metrics of fid.jsonl, FID first; numbers of metrics.jsonl, the losses first)."""
    evals: dict[str, None] = {}
    train: dict[str, None] = dict.fromkeys(FIRST)
    for r in rows:
        for run in r.runs:
            evals.update(dict.fromkeys(stats.metric_keys(run)))
            train.update(dict.fromkeys(stats.curve_keys(run)))
    present = {k for r in rows for run in r.runs for k in stats.curve_keys(run)}
    ordered = sorted(evals, key=lambda k: k != stats.BEST_KEY)
    return ordered, [k for k in train if k in present]


def figures(rows: list[Row], width: int = 330, height: int = 220) -> list[Figure]:
    evals, train = keys_of(rows)
    runs = [(i, run) for i, r in enumerate(rows) for run in r.runs]
    budget = max(16, min(svg.MAX_POINTS, POINT_BUDGET // max(len(runs), 1)))
    axes = {run.path: [fn(run) for _, _, fn in AXES] for _, run in runs}
    out = []
    for source, keys in (("eval", evals), ("train", train)):
        for key in keys:
            svgs = []
            points = {run.path: stats.series(run.evals if source == "eval" else run.metrics,
                                             key) for _, run in runs}
            for a, (_, x_label, _) in enumerate(AXES):
                series = []
                for i, run in runs:
                    axis = axes[run.path][a]
                    xy = ([(float(it), v) for it, v in points[run.path]] if axis is None
                          else stats.at_iterations(axis, points[run.path]))
                    label = f"{rows[i].label}, seed {run.seed} ({run.key})"
                    series.append(svg.Series(label, color(rows[i].index), svg.thin(xy, budget),
                                             key=run.key))
                svgs.append(svg.plot(series, x_label, key, width, height))
            out.append(Figure(key, source, svgs))
    return out
