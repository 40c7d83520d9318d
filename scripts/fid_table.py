"""Turn a `ganqp train -m` sweep into the paper's FID table, ours beside theirs, and FID curves.

    python scripts/fid_table.py outputs/multirun/2025-01-01/12-00-00 [--out DIR] [--no-plot]

Every job directory of the sweep (a folder holding .hydra/config.yaml) is read: status.json
(running / done / failed), fid.jsonl (FID during training, `train.fid_every`) and
metrics.jsonl (it_per_s). Jobs that differ only in `seed` form one row:

- best FID: each seed's lowest FID, then mean and sample std (ddof 1) over the seeds;
- iteration of the best, per seed;
- precision / recall and density / coverage (when fid.metrics logged them: pr, dc) at each
  seed's best-FID evaluation, mean and sample std over the seeds;
- seconds per iteration: training time / iterations from metrics.jsonl (each row's interval
  over its it_per_s; FID time is not in it_per_s), mean over seeds, and relative to the
  gan-qp row of the same data, resolution and other overrides;
- the paper's numbers (ganqp_cli/paper_fid.csv, installed with the package): CelebA-HQ at
  the same resolution, else the 128 px comparison.

Jobs still running or failed stay in the table, counted and marked, with what they have so
far. Writes fid_table.md, fid_table.csv and fid_curves.png (needs matplotlib: the `plot`
extra) into --out (default: the sweep directory) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The paper's column order; other objectives follow alphabetically.
PAPER_ORDER = ["gan-qp", "gan-qp-l2", "wgan-gp", "wgan-sn", "sgan-sn", "lsgan-sn"]
# Overrides that say what a row is, not which variant of it: shown in their own columns.
SHOWN_KEYS = {"objective", "experiment", "seed", "res", "data"}
# Overrides that change where or how fast a job runs, not what it computes.
IGNORED_KEYS = {"data.root", "resume", "fid.weights", "device", "train.workers",
                "train.threads", "fid.workers", "fid.batch"}

METRIC_NOTES = {
    "inception": "FID with pytorch-fid's InceptionV3 (the TTUR network). The paper used Keras' "
                 "ImageNet InceptionV3 (global average pool), a different network: absolute "
                 "values are not comparable with the paper's column, only rankings and gaps.",
    "digits": "FID in the feature space of the digits classifier (fid.extractor=digits): a "
              "domain metric for the bundled digits, comparable neither with Inception FID "
              "nor with the paper's CelebA-HQ numbers. The paper's columns show what the "
              "paper measured on CelebA-HQ, for the ranking only.",
}


@dataclass
class Job:
    path: Path
    objective: str
    data: str
    res: int
    seed: int
    variant: str                      # the overrides besides SHOWN_KEYS, "" if none
    status: str                       # done | running | failed | not started
    iter: int
    iters: int
    extractor: str
    fid: list[tuple[int, float]]      # (iter, fid), finite values only
    sec_per_iter: float | None
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # fid.jsonl rows by iter

    @property
    def best(self) -> tuple[int, float] | None:
        return min(self.fid, key=lambda p: (p[1], p[0])) if self.fid else None

    def at_best(self, key: str) -> float | None:
        """`key` (e.g. precision) in the evaluation of the best FID, if it was logged."""
        b = self.best
        v = self.rows.get(b[0], {}).get(key) if b else None
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


@dataclass
class Row:
    data: str
    res: int
    extractor: str
    objective: str
    variant: str
    jobs: list[Job] = field(default_factory=list)
    rel_time: float | None = None
    paper: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, int, str, str]:
        return self.data, self.res, self.extractor, self.variant

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def bests(self) -> list[tuple[int, float]]:
        return [j.best for j in self.jobs if j.best is not None]

    @property
    def fid_mean(self) -> float | None:
        b = self.bests
        return statistics.fmean(f for _, f in b) if b else None

    @property
    def fid_std(self) -> float | None:
        b = self.bests
        return statistics.stdev(f for _, f in b) if len(b) > 1 else None

    @property
    def sec_per_iter(self) -> float | None:
        s = [j.sec_per_iter for j in self.jobs if j.sec_per_iter is not None]
        return statistics.fmean(s) if s else None

    def at_best(self, key: str) -> tuple[float | None, float | None]:
        """Mean and sample std over the seeds of `key` at each seed's best FID."""
        v = [x for x in (j.at_best(key) for j in self.jobs) if x is not None]
        return (statistics.fmean(v) if v else None,
                statistics.stdev(v) if len(v) > 1 else None)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written by a running job
            continue
    return rows


def seconds_per_iter(metrics: list[dict[str, Any]]) -> float | None:
    """Training seconds per iteration: each logged interval's iterations over its rate."""
    seconds, iters, prev = 0.0, 0, 0
    for row in sorted(metrics, key=lambda r: r["iter"]):
        rate, n = row.get("it_per_s"), row["iter"] - prev
        prev = row["iter"]
        if not rate or n <= 0:
            continue
        seconds += n / rate
        iters += n
    return seconds / iters if iters else None


def load_job(path: Path) -> Job:
    cfg = yaml.safe_load((path / ".hydra" / "config.yaml").read_text())
    over_file = path / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(over_file.read_text()) if over_file.is_file() else []
    variant = ",".join(o for o in overrides or []
                       if o.split("=", 1)[0].lstrip("+~") not in SHOWN_KEYS | IGNORED_KEYS)
    status = {"status": "not started", "iter": 0, "iters": cfg["train"]["iters"]}
    if (path / "status.json").is_file():
        status.update(json.loads((path / "status.json").read_text()))
    fid_rows = _jsonl(path / "fid.jsonl")
    fid = [(int(r["iter"]), float(r["fid"])) for r in fid_rows
           if r.get("fid") is not None and math.isfinite(r["fid"])]
    extractor = (fid_rows[-1].get("extractor") if fid_rows else None) \
        or cfg.get("fid", {}).get("extractor", "inception")
    return Job(path=path, objective=cfg["objective"]["name"], data=cfg["data"]["name"],
               res=int(cfg["res"]), seed=int(cfg["seed"]), variant=variant,
               status=status["status"], iter=int(status["iter"]), iters=int(status["iters"]),
               extractor=str(extractor), fid=sorted(fid),
               sec_per_iter=seconds_per_iter(_jsonl(path / "metrics.jsonl")),
               rows={int(r["iter"]): r for r in fid_rows if "iter" in r})


def find_jobs(sweep: Path) -> list[Job]:
    dirs = sorted(p.parent.parent for p in sweep.rglob(".hydra/config.yaml")
                  if ".submitit" not in p.parts)
    return [load_job(d) for d in dirs]


def load_paper() -> list[dict[str, Any]]:
    text = importlib.resources.files("ganqp_cli").joinpath("paper_fid.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    for r in rows:
        r["resolution"] = int(r["resolution"])
        r["fid"] = float(r["fid"])
        t = r["relative_time_per_iteration"]
        r["relative_time_per_iteration"] = float(t) if t else None
    return rows


def paper_row(paper: list[dict[str, Any]], data: str, res: int, objective: str
              ) -> dict[str, Any] | None:
    """The paper's CelebA-HQ number at this resolution, else its 128 px comparison."""
    want = res if data == "celebahq" else 128
    for r in paper:
        if r["objective"] == objective and r["resolution"] == want:
            return r
    return None


def _order(objective: str) -> tuple[int, str]:
    return (PAPER_ORDER.index(objective) if objective in PAPER_ORDER else len(PAPER_ORDER),
            objective)


def summarize(jobs: list[Job], paper: list[dict[str, Any]]) -> list[Row]:
    rows: dict[tuple, Row] = {}
    for j in jobs:
        k = (j.data, j.res, j.extractor, j.variant, j.objective)
        rows.setdefault(k, Row(j.data, j.res, j.extractor, j.objective, j.variant)).jobs.append(j)
    out = sorted(rows.values(), key=lambda r: (r.data, r.res, r.extractor, r.variant,
                                               _order(r.objective)))
    for r in out:
        r.jobs.sort(key=lambda j: j.seed)
        ref = rows.get((*r.key, "gan-qp"))
        if ref is not None and ref.sec_per_iter and r.sec_per_iter is not None:
            r.rel_time = r.sec_per_iter / ref.sec_per_iter
        r.paper = paper_row(paper, r.data, r.res, r.objective)
    return out


def status_text(r: Row) -> str:
    n = len(r.jobs)
    parts = [f"{r.count('done')}/{n} done"]
    for s in ("running", "failed", "not started"):
        js = [j for j in r.jobs if j.status == s]
        if js:
            where = ", ".join(f"seed {j.seed} at {j.iter}/{j.iters}" for j in js)
            parts.append(f"{len(js)} {s} ({where})")
    return "; ".join(parts)


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


# Metrics beyond FID shown in pairs, each pair a column when any job of a table logged it.
PAIRS = (("precision", "recall"), ("density", "coverage"))


def _pair_columns(rs: list[Row]) -> list[tuple[str, str]]:
    return [p for p in PAIRS if any(r.at_best(p[0])[0] is not None for r in rs)]


def _mean_std(r: Row, key: str) -> str:
    mean, std = r.at_best(key)
    return _f(mean, ".3f") + (f" ± {std:.3f}" if std is not None else "")


def markdown(rows: list[Row]) -> str:
    lines: list[str] = []
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.key, []).append(r)
    for (data, res, extractor, variant), rs in groups.items():
        paper_res = res if data == "celebahq" else 128
        title = f"### {data}, {res} px, FID extractor `{extractor}`"
        pairs = _pair_columns(rs)
        extra = "".join(f"| {a} / {b} at the best FID " for a, b in pairs)
        lines += [title + (f", overrides `{variant}`" if variant else ""), "",
                  "| objective | best FID (mean ± std over seeds) | iteration of the best "
                  f"{extra}| s / iteration | time vs GAN-QP | jobs "
                  f"| paper FID (CelebA-HQ {paper_res}, Keras Inception) | paper time |",
                  "|---|---|---|" + "---|" * len(pairs) + "---|---|---|---|---|"]
        for r in rs:
            bests = r.bests
            fid = _f(r.fid_mean, ".2f")
            if r.fid_std is not None:
                fid += f" ± {r.fid_std:.2f}"
            if bests and len(bests) < len(r.jobs):
                fid += f" ({len(bests)} of {len(r.jobs)} seeds)"
            its = ", ".join(str(i) for i, _ in bests) or "–"
            p = r.paper or {}
            pt = p.get("relative_time_per_iteration")
            cells = "".join(f"| {_mean_std(r, a)} / {_mean_std(r, b)} " for a, b in pairs)
            lines.append(
                f"| {r.objective} | {fid} | {its} {cells}| {_f(r.sec_per_iter, '.4f')} "
                f"| {_f(r.rel_time, '.2f')}{'x' if r.rel_time is not None else ''} "
                f"| {status_text(r)} | {_f(p.get('fid'), 'g')} "
                f"| {_f(pt, 'g')}{'x' if pt is not None else ''} |")
        lines += ["", f"*{METRIC_NOTES.get(extractor, 'FID with extractor ' + extractor)}*", ""]
    return "\n".join(lines)


CSV_FIELDS = ["data", "res", "extractor", "objective", "variant", "jobs", "done", "running",
              "failed", "not_started", "seeds_with_fid", "fid_mean", "fid_std", "best_iters",
              "sec_per_iter", "rel_time_vs_gan_qp", "paper_resolution", "paper_fid",
              "paper_rel_time", "precision_mean", "precision_std", "recall_mean", "recall_std",
              "density_mean", "density_std", "coverage_mean", "coverage_std"]


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            p = r.paper or {}
            w.writerow({"data": r.data, "res": r.res, "extractor": r.extractor,
                        "objective": r.objective, "variant": r.variant, "jobs": len(r.jobs),
                        "done": r.count("done"), "running": r.count("running"),
                        "failed": r.count("failed"), "not_started": r.count("not started"),
                        "seeds_with_fid": len(r.bests), "fid_mean": r.fid_mean,
                        "fid_std": r.fid_std,
                        "best_iters": ";".join(str(i) for i, _ in r.bests),
                        "sec_per_iter": r.sec_per_iter, "rel_time_vs_gan_qp": r.rel_time,
                        "paper_resolution": p.get("resolution"), "paper_fid": p.get("fid"),
                        "paper_rel_time": p.get("relative_time_per_iteration"),
                        **{f"{k}_{s}": v for k in ("precision", "recall", "density", "coverage")
                           for s, v in zip(("mean", "std"), r.at_best(k), strict=True)}})


def curve(r: Row) -> tuple[list[int], list[float], list[float], list[float]]:
    """Mean FID over the seeds at each evaluated iteration, with the min and max."""
    at: dict[int, list[float]] = {}
    for j in r.jobs:
        for it, f in j.fid:
            at.setdefault(it, []).append(f)
    its = sorted(at)
    return (its, [statistics.fmean(at[i]) for i in its], [min(at[i]) for i in its],
            [max(at[i]) for i in its])


def plot(rows: list[Row], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("fid_table: matplotlib is not installed (pip install -e '.[plot]'): no plot",
              file=sys.stderr)
        return False
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.bests:
            groups.setdefault(r.key, []).append(r)
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.5), squeeze=False)
    for ax, ((data, res, extractor, variant), rs) in zip(axes[0], groups.items(), strict=True):
        for r in rs:
            its, mean, lo, hi = curve(r)
            partial = "" if r.count("done") == len(r.jobs) else " (partial)"
            seeds = f", {len(r.jobs)} seeds" if len(r.jobs) > 1 else ""
            line, = ax.plot(its, mean, marker="o", ms=3, label=f"{r.objective}{seeds}{partial}")
            if len(r.jobs) > 1:
                ax.fill_between(its, lo, hi, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("generator iteration")
        ax.set_ylabel(f"FID ({extractor} features)")
        ax.set_yscale("log")
        ax.set_title(f"{data} {res} px" + (f" [{variant}]" if variant else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path, help="a `ganqp train -m` sweep directory")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: sweep)")
    ap.add_argument("--no-plot", action="store_true", help="skip fid_curves.png")
    a = ap.parse_args(argv)
    if not a.sweep.is_dir():
        print(f"fid_table: {a.sweep} is not a directory (pass a sweep directory such as "
              "outputs/multirun/DATE/TIME)", file=sys.stderr)
        return 2
    jobs = find_jobs(a.sweep)
    if not jobs:
        print(f"fid_table: no job directories (with .hydra/config.yaml) under {a.sweep}",
              file=sys.stderr)
        return 2
    rows = summarize(jobs, load_paper())
    out = a.out or a.sweep
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    (out / "fid_table.md").write_text(text + "\n")
    write_csv(rows, out / "fid_table.csv")
    print(text)
    written = [out / "fid_table.md", out / "fid_table.csv"]
    if not a.no_plot and plot(rows, out / "fid_curves.png"):
        written.append(out / "fid_curves.png")
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
