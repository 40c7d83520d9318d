"""The table of a sweep, shared by `ganqp report` and scripts/fid_table.py: runs that differ
only in `seed` form one configuration (a row); configurations that can be compared (the same
data, resolution and FID extractor) form a block.

Per configuration, over its seeds (mean and sample standard deviation, ddof 1): each seed's
best FID and the iteration of it, the final FID, every other logged metric in the evaluation
of each seed's best FID, training seconds per iteration (and relative to the gan-qp row of
the same block and overrides), images per second, wall time; the status of every run; and
the paper's number (ganqp_cli/paper_fid.csv) for a matching objective.
"""

from __future__ import annotations

import csv
import importlib.resources
import statistics
from dataclasses import dataclass, field
from typing import Any

from ganqp_cli.report import stats
from ganqp_cli.report.runs import IGNORED_KEYS, Run

# The paper's column order; other objectives follow alphabetically.
PAPER_ORDER = ["gan-qp", "gan-qp-l2", "wgan-gp", "wgan-sn", "sgan-sn", "lsgan-sn"]
# Overrides that say what a row is, not which variant of it: shown in their own columns.
SHOWN_KEYS = {"objective", "experiment", "seed", "res", "data"}
STATUSES = ("done", "running", "interrupted", "failed", "not started")

METRIC_NOTES = {
    "inception": "FID with pytorch-fid's InceptionV3 (the TTUR network). The paper used Keras' "
                 "ImageNet InceptionV3 (global average pool), a different network: absolute "
                 "values are not comparable with the paper's column, only rankings and gaps.",
    "digits": "FID in the feature space of the digits classifier (fid.extractor=digits): a "
              "domain metric for the bundled digits, comparable neither with Inception FID "
              "nor with the paper's CelebA-HQ numbers. The paper's columns show what the "
              "paper measured on CelebA-HQ, for the ranking only.",
}


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds (std None for one value), and n."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> Spread:
        v = [x for x in values if x is not None]
        return cls(statistics.fmean(v) if v else None,
                   statistics.stdev(v) if len(v) > 1 else None, len(v))


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def variant_of(run: Run, shared: frozenset[str] = frozenset()) -> str:
    """The run's overrides that are neither shown in their own columns, nor irrelevant to
    what it computes, nor `shared` by every run reported on ("" for none)."""
    return ",".join(o for o in run.overrides if _key(o) not in SHOWN_KEYS and o not in shared
                    and not any(_key(o) == k or _key(o).startswith(k) for k in IGNORED_KEYS))


def shared_overrides(runs: list[Run]) -> list[str]:
    """The overrides every run was given (said once, not in every row's label)."""
    if len(runs) < 2:
        return []
    common = set(runs[0].overrides).intersection(*(r.overrides for r in runs[1:]))
    return [o for o in runs[0].overrides if o in common and _key(o) not in SHOWN_KEYS]


@dataclass
class Row:
    """One configuration: the runs that differ only in seed."""

    data: str
    res: int
    extractor: str
    objective: str
    variant: str
    runs: list[Run] = field(default_factory=list)
    rel_time: float | None = None
    paper: dict[str, Any] | None = None
    index: int = 0  # its place among all rows (its colour in the report)

    @property
    def block(self) -> tuple[str, int, str]:
        return self.data, self.res, self.extractor

    @property
    def label(self) -> str:
        return self.objective + (f" [{self.variant}]" if self.variant else "")

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    @property
    def bests(self) -> list[tuple[int, float]]:
        return [b for b in (stats.best(r) for r in self.runs) if b is not None]

    @property
    def best_fid(self) -> Spread:
        return Spread.of([f for _, f in self.bests])

    @property
    def final_fid(self) -> Spread:
        return Spread.of([f[1] if f else None for f in map(stats.final, self.runs)])

    def at_best(self, key: str) -> Spread:
        return Spread.of([stats.at_best(r, key) for r in self.runs])

    @property
    def sec_per_iter(self) -> Spread:
        return Spread.of([stats.seconds_per_iter(r) for r in self.runs])

    @property
    def img_per_s(self) -> Spread:
        return Spread.of([stats.images_per_second(r) for r in self.runs])

    @property
    def wall_s(self) -> Spread:
        return Spread.of([stats.wall_seconds(r) for r in self.runs])

    @property
    def metrics(self) -> list[str]:
        """Every metric any of its runs logged, FID first."""
        keys: dict[str, None] = {}
        for r in self.runs:
            keys.update(dict.fromkeys(stats.metric_keys(r)))
        return sorted(keys, key=lambda k: k != stats.BEST_KEY)


def status_text(row: Row, reasons: bool = False) -> str:
    """"2/3 done; 1 failed (seed 2 at 120/300)", with each run's reason when asked."""
    parts = [f"{row.count('done')}/{len(row.runs)} done"]
    for s in STATUSES[1:]:
        runs = [r for r in row.runs if r.status == s]
        if runs:
            where = ", ".join(f"seed {r.seed} at {r.iter}/{r.iters}"
                              + (f": {r.reason}" if reasons and r.reason else "") for r in runs)
            parts.append(f"{len(runs)} {s} ({where})")
    return "; ".join(parts)


def load_paper() -> list[dict[str, Any]]:
    text = importlib.resources.files("ganqp_cli").joinpath("paper_fid.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    for r in rows:
        r["resolution"] = int(r["resolution"])
        r["fid"] = float(r["fid"])
        t = r["relative_time_per_iteration"]
        r["relative_time_per_iteration"] = float(t) if t else None
    return rows


def paper_resolution(data: str, res: int) -> int:
    """The paper's CelebA-HQ table at this resolution; other data: its 128 px comparison."""
    return res if data == "celebahq" else 128


def paper_row(paper: list[dict[str, Any]], data: str, res: int, objective: str
              ) -> dict[str, Any] | None:
    want = paper_resolution(data, res)
    return next((r for r in paper if r["objective"] == objective and r["resolution"] == want),
                None)


def _order(objective: str) -> tuple[int, str]:
    return (PAPER_ORDER.index(objective) if objective in PAPER_ORDER else len(PAPER_ORDER),
            objective)


def summarize(runs: list[Run], paper: list[dict[str, Any]] | None = None) -> list[Row]:
    """The configurations of `runs`, by block, then variant, then the paper's order."""
    paper = load_paper() if paper is None else paper
    shared = frozenset(shared_overrides(runs))
    rows: dict[tuple, Row] = {}
    for run in runs:
        res = run.get("res", 0)
        k = (str(run.get("data.name", "?")), int(res) if isinstance(res, int) else 0,
             run.extractor, variant_of(run, shared), run.objective)
        rows.setdefault(k, Row(k[0], k[1], k[2], k[4], k[3])).runs.append(run)
    out = sorted(rows.values(), key=lambda r: (*r.block, r.variant, _order(r.objective)))
    for i, r in enumerate(out):
        r.index = i
        r.runs.sort(key=lambda run: (run.seed, str(run.path)))
        ref = rows.get((*r.block, r.variant, "gan-qp"))
        mine, theirs = r.sec_per_iter.mean, ref.sec_per_iter.mean if ref else None
        if mine is not None and theirs:
            r.rel_time = mine / theirs
        r.paper = paper_row(paper, r.data, r.res, r.objective)
    return out


def blocks(rows: list[Row]) -> dict[tuple[str, int, str], list[Row]]:
    out: dict[tuple[str, int, str], list[Row]] = {}
    for r in rows:
        out.setdefault(r.block, []).append(r)
    return out


def metric_columns(rows: list[Row]) -> list[str]:
    """The metrics beside the best FID: every one any row logged, in the order first seen."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(k for k in r.metrics if k != stats.BEST_KEY))
    return list(keys)


def note(extractor: str) -> str:
    return METRIC_NOTES.get(extractor, f"FID with extractor {extractor}")
