"""Seconds per training iteration of each objective, relative to gan-qp, measured in one run.

Each measurement is a real `ganqp train` run (in-process) on the same arch, resolution and
batch; the time of iterations after a warm-up window comes from metrics.jsonl's it_per_s.
Objectives run round-robin `--repeats` times and the median is kept, so a change in machine
load shifts all of them alike. Two columns: each objective with its own YAML's critic steps
(what a user gets), and all with gan-qp's 2 critic steps (the cost of the loss itself, e.g.
WGAN-GP's gradient penalty). A third table: each augmentation and regulariser added to
gan-qp (`--variants`), relative to plain gan-qp in the same rounds.

    python scripts/bench_objectives.py                       # CPU: res 32, width 0.25, batch 64
    python scripts/bench_objectives.py --device cuda --res 128 --width 1 --timed 100
    python scripts/bench_objectives.py --objectives gan-qp   # only gan-qp and the variants
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path

from ganqp_cli.cli import main as ganqp

OBJECTIVES = ["gan-qp", "gan-qp-l2", "wgan", "wgan-gp", "wgan-div", "wgan-sn", "sgan-sn",
              "lsgan-sn", "hinge-sn", "fgan-kl", "fgan-reverse-kl", "fgan-pearson",
              "fgan-hellinger", "fgan-js", "fgan-gan"]
# gan-qp with one augmentation or regulariser (weights are irrelevant to the cost).
VARIANTS = {"aug=diffaugment": ["aug=diffaugment"], "aug=ada": ["aug=ada"],
            "reg.r1": ["reg.r1=1"], "reg.r1 every=16": ["reg.r1=1", "reg.every=16"],
            "reg.r2": ["reg.r2=1"], "reg.lecam": ["reg.lecam=0.1"]}


def seconds_per_iter(objective: str, args: argparse.Namespace, extra: list[str],
                     root: Path) -> float:
    run = root / f"{objective}-{len(list(root.iterdir()))}"
    overrides = [f"objective={objective}", f"arch={args.arch}", f"res={args.res}",
                 f"arch.width={args.width}", f"train.batch_size={args.batch}",
                 f"data={args.data}", f"device={args.device}",
                 f"train.iters={args.warmup + args.timed}", f"train.log_every={args.warmup}",
                 "train.sample_every=0", "train.ckpt_every=0", "train.sample_n=4",
                 "train.workers=0", f"train.threads={args.threads}", f"hydra.run.dir={run}",
                 *extra]
    if args.timed % args.warmup:
        raise SystemExit("--timed must be a multiple of --warmup (one log row per window)")
    with contextlib.redirect_stdout(io.StringIO()):
        ganqp(["train", *overrides])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["it_per_s"] for r in rows[1:]]  # windows after the warm-up window
    return statistics.mean(1.0 / r for r in rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objectives", nargs="+", default=OBJECTIVES)
    p.add_argument("--arch", default="gan-qp")
    p.add_argument("--data", default="digits")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=5, help="iterations before timing")
    p.add_argument("--timed", type=int, default=20, help="timed iterations")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS),
                   help="gan-qp variants to time (none: skip the table)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: steadier timings on a shared machine; 0: torch's)")
    args = p.parse_args()
    names = ["gan-qp", *[o for o in args.objectives if o != "gan-qp"]]
    own: dict[str, list[float]] = {n: [] for n in names}
    same: dict[str, list[float]] = {n: [] for n in names}
    variant: dict[str, list[float]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for n in names:
                own[n].append(seconds_per_iter(n, args, [], Path(tmp)))
                same[n].append(seconds_per_iter(n, args, ["objective.d_steps=2"], Path(tmp)))
            for v in args.variants:
                variant[v].append(seconds_per_iter("gan-qp", args, VARIANTS[v], Path(tmp)))
    med = {n: statistics.median(v) for n, v in own.items()}
    med2 = {n: statistics.median(v) for n, v in same.items()}
    print(f"arch={args.arch} res={args.res} width={args.width} batch={args.batch} "
          f"device={args.device} threads={args.threads}; median of {args.repeats} runs of "
          f"{args.timed} iterations")
    print(f"{'objective':<16} {'own d_steps':>11} {'s/iter':>9} {'x gan-qp':>9} "
          f"{'s/iter (2 steps)':>17} {'x gan-qp':>9}")
    for n in names:
        print(f"{n:<16} {d_steps(n):>11} {med[n]:>9.4f} {med[n] / med['gan-qp']:>8.2f}x "
              f"{med2[n]:>17.4f} {med2[n] / med2['gan-qp']:>8.2f}x")
    if args.variants:
        print(f"\n{'gan-qp with':<16} {'s/iter':>9} {'x gan-qp':>9}")
        for v, times in variant.items():
            t = statistics.median(times)
            print(f"{v:<16} {t:>9.4f} {t / med['gan-qp']:>8.2f}x")


def d_steps(objective: str) -> int:
    from hydra import compose, initialize_config_module
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        return int(compose("train", overrides=[f"objective={objective}"]).objective.d_steps)


if __name__ == "__main__":
    main()
