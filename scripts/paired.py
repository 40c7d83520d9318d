"""Paired, alternated measurements for the benchmarks: the spread of a ratio, not one number.

Every benchmark compares ganqp with a reference measured in the same run. One timing of
each scatters by 1.5x on a shared 2-core machine, so a ratio is measured over pairs: each
pair runs both sides back to back, the order alternating (A B, B A, A B, ...) so that a
slow phase of the machine hits both sides alike, and the benchmark reports the minimum,
median and maximum of the per-pair ratios. The medians of the odd and the even pairs are
printed too: when they differ by more than a few per cent the machine was not quiet or
there were too few pairs, and the median is not a figure to quote.

    from paired import measure_pairs, Spread
    ratios = measure_pairs(lambda: time_ours(), lambda: time_theirs(), pairs=7)
    print(Spread.of(ratios).line("img/s ganqp / hand-written"))
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """min / median / max of per-pair values, with the medians of the two interleaved
    halves (odd and even pairs) as a check of stability."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no measurements")
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def halves(self) -> tuple[float, float] | None:
        """Medians of the odd and the even pairs (None with fewer than 4 pairs)."""
        if len(self.values) < 4:
            return None
        return statistics.median(self.values[0::2]), statistics.median(self.values[1::2])

    @property
    def drift(self) -> float | None:
        """Relative difference of the two halves' medians: what re-running would move the
        median by, roughly."""
        h = self.halves
        if h is None or max(abs(h[0]), abs(h[1])) == 0:
            return None
        return abs(h[0] - h[1]) / max(abs(h[0]), abs(h[1]))

    def line(self, what: str, fmt: str = ".3f") -> str:
        text = (f"{what}: median {self.median:{fmt}} (min {self.low:{fmt}}, "
                f"max {self.high:{fmt}}, {len(self.values)} pairs)")
        if self.drift is not None:
            a, b = self.halves
            text += f"; halves {a:{fmt}} / {b:{fmt}} ({100 * self.drift:.1f}% apart)"
        return text

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high,
                "pairs": len(self.values),
                **({"drift": self.drift} if self.drift is not None else {})}


def measure_pairs(a: Callable[[], float], b: Callable[[], float], pairs: int,
                  ratio: Callable[[float, float], float] | None = None
                  ) -> list[float]:
    """Run `a` and `b` `pairs` times each, alternating which goes first; each call returns
    its measurement (seconds, images/s, ...). Returns the per-pair ratios a/b (or
    `ratio(a_value, b_value)`)."""
    ratio = ratio or (lambda x, y: x / y)
    return [ratio(*one_pair(a, b, b_first=k % 2 == 1)) for k in range(pairs)]


def one_pair(a: Callable[[], float], b: Callable[[], float], b_first: bool
             ) -> tuple[float, float]:
    """One measurement of each side, `b` first if asked; returns (a's, b's)."""
    if b_first:
        vb = b()
        return a(), vb
    va = a()
    return va, b()


def interleave(rows: dict[str, tuple[Callable[[], float], Callable[[], float]]], pairs: int,
               progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """`measure_pairs` for many rows at once: pair k of every row, then pair k + 1 of every
    row, so that each row's pairs spread over the whole run. A shared machine's speed
    changes over minutes as well as seconds: a row timed within one minute carries that
    minute's state (bench_objectives' rows moved up to 14% between invocations timed one
    after another, 0-4% round-robin). Which side goes first alternates with the pair and
    the row. `progress(k)` is called after each round."""
    out: dict[str, list[float]] = {name: [] for name in rows}
    for k in range(pairs):
        for i, (name, (a, b)) in enumerate(rows.items()):
            va, vb = one_pair(a, b, b_first=(k + i) % 2 == 1)
            out[name].append(va / vb)
        if progress is not None:
            progress(k + 1)
    return out


def alternated_rates(steps: tuple[Callable[[], object], Callable[[], object]], per_step: int,
                     seconds: float, sub: float = 0.01, warm: int = 0, b_first: bool = False,
                     clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """Units/s of two sides timed in alternated sub-windows of `sub` seconds (A B B A A B ...)
    until each has `seconds` timed; each call of a step delivers `per_step` units. Where a
    side's speed wanders over tenths of seconds (a shared host's memory bandwidth, thread
    wake-ups), one long window per side gives each its own stretch of that; sub-windows of
    10 ms share it. Each sub-window begins with `warm` untimed steps: a side that works ahead
    (threads with a queue) has batches ready at the start, made during the other side's
    window, and work still in flight when it ends."""
    done, spent = [0, 0], [0.0, 0.0]
    i = 0
    while min(spent) < seconds:
        for side in ((1, 0) if (i + b_first) % 2 else (0, 1)):
            step = steps[side]
            for _ in range(warm):
                step()
            n, t0 = 0, clock()
            while n < 1 or clock() - t0 < sub:
                step()
                n += 1
            spent[side] += clock() - t0
            done[side] += n
        i += 1
    return done[0] * per_step / spent[0], done[1] * per_step / spent[1]


def block_seconds(step: Callable[[], None], iters: int,
                  wait: Callable[[], None] = lambda: None) -> float:
    """Seconds per call of `step` over one block of `iters` calls; `wait` blocks until queued
    device work is done (a GPU's), before each clock read."""
    wait()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    wait()
    return (time.perf_counter() - t0) / iters


def load_average() -> str:
    """The 1-minute load average, printed beside every figure (a quiet machine reads < 1
    per core's worth of other work)."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average: unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
