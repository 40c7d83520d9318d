"""The numbers of one run: its best and final FID, the other metrics at the best, its
training time, images per second and wall time, and the x axes of its curves.

Training time is the sum over logged intervals of iterations / it_per_s: the loop's own rate,
which leaves out FID evaluations, samples and checkpoints (the cost of an objective, the same
for every objective of a sweep, is what it measures). Wall time is what the run took, FID
and start-ups included: `elapsed_s` counts from each process's start, so a resumed run is
summed over its segments.
"""

from __future__ import annotations

import math
from typing import Any

from ganqp_cli.report.runs import Run

BEST_KEY = "fid"
# fid.jsonl keys that describe an evaluation rather than measure the generator.
NOT_METRICS = {"iter", "n", "dims", "extractor", "kid_subset_size"}
# metrics.jsonl keys that are bookkeeping, not curves (rates and clocks have their own axes).
NOT_CURVES = {"iter", "it_per_s", "img_per_s", "elapsed_s"}


def finite(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)  # bool is not a number here


def memo(fn: Any) -> Any:
    """fn(run) computed once per run (the page asks for the same numbers many times)."""
    def once(run: Run) -> Any:
        if fn.__name__ not in run.memo:
            run.memo[fn.__name__] = fn(run)
        return run.memo[fn.__name__]
    once.__name__, once.__doc__ = fn.__name__, fn.__doc__
    return once


@memo
def metric_keys(run: Run) -> list[str]:
    """The numbers its evaluations logged (fid, kid, precision, ..., and whatever new ones
    come), in the order first logged; spreads (`*_std`) go with their value, not alone."""
    keys: dict[str, None] = {}
    for row in run.evals:
        for k, v in row.items():
            if k not in NOT_METRICS and not k.endswith("_std") and finite(v):
                keys[k] = None
    return list(keys)


@memo
def curve_keys(run: Run) -> list[str]:
    """Every number metrics.jsonl logged (losses, the objective's statistics, regularisers,
    counters) less the metrics of fid.jsonl, which have their own figures."""
    skip = NOT_CURVES | set(metric_keys(run))
    keys: dict[str, None] = {}
    for row in run.metrics:
        for k, v in row.items():
            if k not in skip and not k.endswith("_std") and finite(v):
                keys[k] = None
    return list(keys)


def series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["iter"], float(r[key])) for r in rows if finite(r.get(key))]


def best(run: Run, key: str = BEST_KEY) -> tuple[int, float] | None:
    """(iteration, value) of the lowest `key` (the earliest on ties)."""
    s = series(run.evals, key)
    return min(s, key=lambda p: (p[1], p[0])) if s else None


def final(run: Run, key: str = BEST_KEY) -> tuple[int, float] | None:
    s = series(run.evals, key)
    return s[-1] if s else None


def at_best(run: Run, key: str) -> float | None:
    """`key` in the evaluation of the best FID (its own best would mix evaluations)."""
    b = best(run)
    if b is None:
        return None
    row = next((r for r in run.evals if r["iter"] == b[0]), {})
    return float(row[key]) if finite(row.get(key)) else None


@memo
def intervals(run: Run) -> list[tuple[int, int, float, float | None]]:
    """(iteration, iterations in the interval ending there, their training seconds, images
    per iteration) for every logged row with a rate."""
    out, prev = [], 0
    for row in run.metrics:
        n, rate = row["iter"] - prev, row.get("it_per_s")
        prev = row["iter"]
        if n <= 0 or not finite(rate) or rate <= 0:
            continue
        per = row.get("img_per_s")
        out.append((row["iter"], n, n / rate, per / rate if finite(per) else None))
    return out


@memo
def seconds_per_iter(run: Run) -> float | None:
    """Training seconds per iteration: each logged interval's iterations over its rate."""
    parts = intervals(run)
    iters = sum(n for _, n, _, _ in parts)
    return sum(s for _, _, s, _ in parts) / iters if iters else None


@memo
def images_per_iter(run: Run) -> float | None:
    """Real images drawn per iteration (batch x (critic steps + 1)), as the log says."""
    per = [p for *_, p in intervals(run) if p is not None]
    if per:
        return per[-1]
    batch, steps = run.get("train.batch_size"), run.get("objective.d_steps", 1)
    return float(batch * (steps + 1)) if finite(batch) and finite(steps) else None


def images_per_second(run: Run) -> float | None:
    s, per = seconds_per_iter(run), images_per_iter(run)
    return per / s if s and per else None


@memo
def wall_seconds(run: Run) -> float | None:
    """The run's wall time: each process's last `elapsed_s`, summed over resumed segments
    (elapsed_s starts again from 0 in a resumed process)."""
    total, last = 0.0, None
    for row in run.metrics:
        e = row.get("elapsed_s")
        if not finite(e):
            continue
        if last is not None and e < last:
            total += last
        last = e
    return total + last if last is not None else None


@memo
def time_axis(run: Run) -> dict[int, float]:
    """Training seconds at each logged iteration (cumulative)."""
    out, t = {}, 0.0
    for it, _, seconds, _ in intervals(run):
        t += seconds
        out[it] = t
    return out


@memo
def image_axis(run: Run) -> dict[int, float]:
    """Real images drawn up to each logged iteration (cumulative), in thousands."""
    per = images_per_iter(run)
    its = [r["iter"] for r in run.metrics] + [r["iter"] for r in run.evals]
    return {} if per is None else {it: it * per / 1000 for it in its}


def at_iterations(axis: dict[int, float], points: list[tuple[int, float]]
                  ) -> list[tuple[float, float]]:
    """`points` (iteration, value) placed on another axis; iterations between logged rows
    are interpolated (an evaluation at an iteration whose row was lost), outside dropped."""
    known = sorted(axis.items())
    out = []
    for it, v in points:
        if it in axis:
            out.append((axis[it], v))
            continue
        lo = max((p for p in known if p[0] < it), default=None)
        hi = min((p for p in known if p[0] > it), default=None)
        if lo and hi:
            out.append((lo[1] + (hi[1] - lo[1]) * (it - lo[0]) / (hi[0] - lo[0]), v))
    return out


def done_of_planned(run: Run) -> tuple[int, int]:
    last = max([run.iter] + [r["iter"] for r in run.metrics[-1:]])
    return last, run.iters
