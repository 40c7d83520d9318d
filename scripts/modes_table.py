"""The mode-coverage table of a sweep on `data=stacked-digits` (experiment=modes-table): modes
and KL(p || uniform) of each configuration over its seeds, at equal iterations and at equal
training time, with the published Stacked MNIST figures beside it.

Reads each job directory's `fid.jsonl` (the `modes` evaluations), `metrics.jsonl` (training
time: each logged window's iterations over its it_per_s, evaluations excluded) and
`.hydra/overrides.yaml`; jobs whose overrides differ only in `seed` form a row, named by the
overrides that not every job shares.

- equal iterations: the evaluation at the largest iteration every job reached;
- equal time: for each job the last evaluation within the time the reference row needs for
  those iterations (a cheaper row: its last evaluation, reached in less time). With
  `--measure-costs` each row's time per iteration is measured anew, relative to the
  `--reference` row, as the benchmarks measure (short runs of the row's own
  configuration, alternated pairs, the median ratio: scripts/paired.py), which a busy shared
  machine disturbs far less than the sweep's own wall-clock times, used otherwise (each
  logged window's iterations over its it_per_s, evaluations excluded; or `--seconds T`).

    python scripts/modes_table.py SWEEP_DIR [SWEEP_DIR ...] [--measure-costs] [--out FILE.md]
        [--costs FILE.json]   # keep the measured costs (or reuse them: the sweep may go on)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import Spread, load_average, measure_pairs  # noqa: E402

# Published Stacked MNIST results (MNIST digits, other networks, classifiers and budgets: for
# the ranking only). (method, modes, KL, source)
PUBLISHED = [
    ("DCGAN", "99", "3.40", "VEEGAN (Srivastava et al. 2017), Table 1; PacGAN Table 1"),
    ("ALI", "16", "5.40", "idem"),
    ("Unrolled GAN", "48.7", "4.32", "idem"),
    ("VEEGAN", "150", "2.95", "idem"),
    ("PacDCGAN2", "1000", "0.06", "PacGAN (Lin et al. 2018), Table 1"),
    ("GAN + R1 + R2 (R3GAN's ablation)", "693", "-", "R3GAN (Huang et al. 2024)"),
    ("R3GAN", "1000", "-", "R3GAN (Huang et al. 2024)"),
]


@dataclass
class Job:
    path: Path
    overrides: list[str]  # less the seed
    seed: int
    evals: list[tuple[int, int, float]]  # (iteration, modes, KL)
    seconds: dict[int, float]            # training seconds at each logged iteration
    status: str

    def train_seconds(self, it: int) -> float:
        """Training time up to iteration `it` (the last logged iteration at or before it)."""
        known = [i for i in self.seconds if i <= it]
        return self.seconds[max(known)] if known else 0.0


def rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a run still writing its last line
            pass
    return out


def load_job(job: Path) -> Job | None:
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    keep = [o for o in overrides if not o.startswith(("seed=", "hydra."))]
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 0)
    evals = [(r["iter"], r["modes"], r["modes_kl"]) for r in rows(job / "fid.jsonl")
             if "modes" in r]
    if not evals:
        return None
    seconds, total, last = {}, 0.0, 0
    for r in rows(job / "metrics.jsonl"):
        total += (r["iter"] - last) / r["it_per_s"]
        seconds[r["iter"]], last = total, r["iter"]
    status = json.loads((job / "status.json").read_text())["status"] \
        if (job / "status.json").is_file() else "?"
    return Job(job, keep, seed, evals, seconds, status)


def row_name(job: Job, common: set[str]) -> str:
    return " ".join(o for o in job.overrides if o not in common) or "(all alike)"


def mean_std(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def at_or_before(job: Job, ok) -> tuple[int, int, float] | None:
    hits = [e for e in job.evals if ok(e)]
    return hits[-1] if hits else None


def groups_of(jobs: list[Job]) -> dict[str, list[Job]]:
    """Jobs by row: their overrides less the seed and less those every job shares."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        groups.setdefault(row_name(j, common), []).append(j)
    return dict(sorted(groups.items()))


def table(jobs: list[Job], seconds: float | None = None,
          costs: dict[str, Spread] | None = None) -> str:
    """The Markdown table; `costs`: each row's time per iteration relative to a reference."""
    groups = groups_of(jobs)
    last = min(j.evals[-1][0] for j in jobs)  # every job has an evaluation there
    if costs is not None:  # relative to the reference row: its time for `last` iterations
        reach = {name: last / costs[name].median for name in groups}
        intro = (f"Equal time: the time the reference row (cost 1.00) needs for {last:,} "
                 "iterations (costs per iteration measured in alternated pairs); a cheaper "
                 f"row is shown at its last evaluation, reached in less time.")
        cost_head = "time / iteration (x reference, min-max)"
    else:
        if seconds is None:  # the fastest row's training time to that iteration
            seconds = min(statistics.mean(j.train_seconds(last) for j in g)
                          for g in groups.values())
        reach = None
        intro = f"Equal time: {seconds:.0f} s of training (wall clock, evaluations excluded)."
        cost_head = "s / iteration (wall clock)"
    out = [f"Equal iterations: {last:,}. {intro}", "",
           f"| configuration | seeds | modes at equal iterations | KL | {cost_head} | "
           "modes at equal time | KL | iteration reached |", "|---|---|---|---|---|---|---|---|"]
    for name, g in groups.items():
        it_rows = [at_or_before(j, lambda e: e[0] <= last) for j in g]
        if reach is not None:
            t_rows = [at_or_before(j, lambda e, lim=reach[name]: e[0] <= lim + 1e-9)
                      for j in g]
        else:
            t_rows = [at_or_before(j, lambda e, j=j: j.train_seconds(e[0]) <= seconds * 1.001)
                      for j in g]
        t_rows = [r for r in t_rows if r is not None]
        if costs is not None:
            c = costs[name]
            cost = f"{c.median:.2f} ({c.low:.2f}-{c.high:.2f})"
        else:
            cost = f"{statistics.mean(j.train_seconds(last) / last for j in g):.3f}"
        done = sum(j.status == "done" for j in g)
        out.append(
            f"| {name} | {len(g)} ({done} done) | "
            f"{mean_std([float(r[1]) for r in it_rows], '.0f')} | "
            f"{mean_std([r[2] for r in it_rows], '.2f')} | {cost} | "
            f"{mean_std([float(r[1]) for r in t_rows], '.0f')} | "
            f"{mean_std([r[2] for r in t_rows], '.2f')} | "
            f"{mean_std([float(r[0]) for r in t_rows], '.0f')} |")
    out += ["", "Published on Stacked MNIST (MNIST digits, 1,000 modes; other networks, "
            "classifiers and budgets: another data set, for the ranking only):", "",
            "| method | modes | KL | source |", "|---|---|---|---|"]
    out += [f"| {m} | {n} | {kl} | {src} |" for m, n, kl, src in PUBLISHED]
    return "\n".join(out)


def seconds_per_iter(job: Path, warmup: int, timed: int, root: Path) -> float:
    """A short run of `job`'s own configuration (no evaluations): mean seconds per
    iteration over its logged windows after the warm-up one."""
    from ganqp_cli.cli import main as ganqp
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    keep = [o for o in overrides if not o.startswith(("train.", "hydra."))]
    run = root / f"run-{len(list(root.iterdir()))}"
    with contextlib.redirect_stdout(io.StringIO()):
        ganqp(["train", *keep, f"train.iters={warmup + timed}", f"train.log_every={warmup}",
               "train.fid_every=0", "train.sample_every=0", "train.ckpt_every=0",
               f"hydra.run.dir={run}"])
    logged = rows(run / "metrics.jsonl")[1:]
    return statistics.mean(1.0 / r["it_per_s"] for r in logged)


def measure_costs(jobs: list[Job], reference: str, pairs: int, warmup: int, timed: int
                  ) -> dict[str, Spread]:
    """Each row's seconds per iteration over the reference row's, in alternated pairs."""
    groups = groups_of(jobs)
    ref = next((n for n in groups if reference in n), next(iter(groups)))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref_job = groups[ref][0].path
        for name, g in groups.items():
            if name == ref:
                out[name] = Spread.of([1.0])
                continue
            out[name] = Spread.of(measure_pairs(
                lambda g=g: seconds_per_iter(g[0].path, warmup, timed, root),
                lambda: seconds_per_iter(ref_job, warmup, timed, root), pairs))
            print(out[name].line(f"cost of {name} x {ref}", ".2f"), file=sys.stderr,
                  flush=True)
    return out


def known_costs(args: argparse.Namespace, jobs: list[Job]) -> tuple[dict[str, Spread], str]:
    """The rows' costs and how they were measured: from --costs when that file exists, else
    measured now (and saved there)."""
    if args.costs is not None and args.costs.is_file():
        saved = json.loads(args.costs.read_text())
        return {k: Spread.of(v) for k, v in saved["costs"].items()}, saved["note"]
    start = load_average()
    costs = measure_costs(jobs, args.reference, args.pairs, args.warmup, args.timed)
    note = (f"Costs: {args.pairs} alternated pairs of {args.timed} timed iterations per row; "
            f"at the start {start}; at the end {load_average()}.")
    if args.costs is not None:
        args.costs.write_text(json.dumps({"costs": {k: list(c.values) for k, c in
                                                    costs.items()}, "note": note}))
    return costs, note


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweeps", nargs="+", type=Path)
    p.add_argument("--seconds", type=float, default=None,
                   help="the equal-time budget in wall-clock seconds (default: the fastest "
                        "row's training time)")
    p.add_argument("--measure-costs", action="store_true",
                   help="measure each row's time per iteration in alternated pairs")
    p.add_argument("--reference", default="objective=gan-qp arch=gan-qp reg.r1=0",
                   help="the row the costs are relative to (a part of its name)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--timed", type=int, default=20)
    p.add_argument("--out", type=Path, default=None, help="also write the table here")
    p.add_argument("--costs", type=Path, default=None,
                   help="with --measure-costs: a JSON file of the measured costs, read "
                        "instead of measuring when it exists, written after measuring")
    args = p.parse_args()
    jobs = [j for d in args.sweeps for job in sorted(d.iterdir())
            if (job / ".hydra" / "overrides.yaml").is_file()
            for j in [load_job(job)] if j is not None]
    if not jobs:
        raise SystemExit(f"no job with modes evaluations under {', '.join(map(str, args.sweeps))}")
    costs, note = None, ""
    if args.measure_costs:
        costs, note = known_costs(args, jobs)
    text = table(jobs, args.seconds, costs)
    if costs is not None:
        text += f"\n\n{note}"
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
