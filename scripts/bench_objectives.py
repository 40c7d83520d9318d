"""Seconds per training iteration of each objective relative to gan-qp, of gan-qp with each
augmentation and regulariser relative to plain gan-qp, and arch=r3gan's images/s relative to
arch=resnet's at equal parameter count: every figure a ratio over alternated pairs, measured
in one run.

Each measurement is a real `ganqp train` run (in-process) on the same arch, resolution and
batch; its time per iteration is the mean over the logged windows after a warm-up window
(metrics.jsonl's it_per_s). A ratio is measured over `--pairs` pairs, each running both sides
back to back in alternating order (scripts/paired.py), and printed as its median with the
minimum, the maximum and the medians of the odd and even pairs. Tables:

- each objective with its own YAML's critic steps (what a user gets: rpgan with the R1 and R2
  of its recipe, wgan-gp with its 5 steps), and all with gan-qp's 2 critic steps (the cost of
  the loss itself, e.g. WGAN-GP's gradient penalty), against gan-qp;
- gan-qp with each augmentation or regulariser (`--variants`), against plain gan-qp;
- `--archs`: objective=rpgan (R1 + R2) on arch=r3gan against arch=resnet, resnet's width
  chosen so that both have the same number of parameters (G + D, within 1%): images/s.

    python scripts/bench_objectives.py                       # CPU: res 32, width 0.25, batch 64
    python scripts/bench_objectives.py --objectives rpgan --variants --pairs 7
    python scripts/bench_objectives.py --objectives --variants --archs     # the arch ratio only
    python scripts/bench_objectives.py --device cuda --res 128 --width 1 --timed 100
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired import Spread, load_average, measure_pairs  # noqa: E402

from ganqp_cli.cli import main as ganqp  # noqa: E402

OBJECTIVES = ["gan-qp-l2", "rpgan", "wgan", "wgan-gp", "wgan-div", "wgan-sn", "sgan-sn",
              "lsgan-sn", "hinge-sn", "fgan-kl", "fgan-reverse-kl", "fgan-pearson",
              "fgan-hellinger", "fgan-js", "fgan-gan"]
# gan-qp with one augmentation or regulariser (weights are irrelevant to the cost).
VARIANTS = {"aug=diffaugment": ["aug=diffaugment"], "aug=ada": ["aug=ada"],
            "reg.r1": ["reg.r1=1"], "reg.r1 every=16": ["reg.r1=1", "reg.every=16"],
            "reg.r2": ["reg.r2=1"], "reg.r1 + reg.r2": ["reg.r1=1", "reg.r2=1"],
            "reg.lecam": ["reg.lecam=0.1"]}


def seconds_per_iter(args: argparse.Namespace, overrides: list[str], root: Path) -> float:
    """Mean seconds per iteration of one short `ganqp train` run after its warm-up window."""
    run = root / f"run-{len(list(root.iterdir()))}"
    if args.timed % args.warmup:
        raise SystemExit("--timed must be a multiple of --warmup (one log row per window)")
    base = [f"arch={args.arch}", f"res={args.res}", f"arch.width={args.width}",
            f"train.batch_size={args.batch}", f"data={args.data}", f"device={args.device}",
            f"train.iters={args.warmup + args.timed}", f"train.log_every={args.warmup}",
            "train.sample_every=0", "train.ckpt_every=0", "train.sample_n=4",
            "train.workers=0", f"train.threads={args.threads}", f"hydra.run.dir={run}"]
    with contextlib.redirect_stdout(io.StringIO()):
        ganqp(["train", *base, *overrides])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(1.0 / r["it_per_s"] for r in rows[1:])  # after the warm-up window


def ratio(args: argparse.Namespace, a: list[str], b: list[str], root: Path) -> Spread:
    """Seconds per iteration of `a` over `b`, over alternated pairs."""
    return Spread.of(measure_pairs(lambda: seconds_per_iter(args, a, root),
                                   lambda: seconds_per_iter(args, b, root), args.pairs))


def params(arch: str, keys: list[str], res: int) -> int:
    """G + D parameters of objective=rpgan on `arch` with `keys` (built on the meta device)."""
    import torch
    from hydra import compose, initialize_config_module

    from ganqp_cli.config import make
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=["objective=rpgan", f"arch={arch}", f"res={res}",
                                          "data=stacked-digits", *keys])
    with torch.device("meta"):
        m = make(cfg.objective, "objective").build(make(cfg.arch, "arch"), (3, res, res))
    return sum(p.numel() for p in m.parameters())


def equal_resnet_width(r3gan_keys: list[str], res: int) -> tuple[float, int, int]:
    """arch=resnet's width at which its G + D count equals arch=r3gan's (bisection)."""
    target = params("r3gan", r3gan_keys, res)
    lo, hi = 0.01, 4.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if params("resnet", [f"arch.width={mid}"], res) < target else (lo, mid)
    return hi, params("resnet", [f"arch.width={hi}"], res), target


def objective_rows(args: argparse.Namespace, root: Path) -> None:
    print(f"{'objective':<16} {'own d_steps':>11}  x gan-qp (own critic steps) / x gan-qp "
          "(2 critic steps each)")
    for n in args.objectives:
        own = ratio(args, [f"objective={n}"], ["objective=gan-qp"], root)
        two = ratio(args, [f"objective={n}", "objective.d_steps=2"], ["objective=gan-qp"], root)
        print(f"{n:<16} {d_steps(n):>11}  {own.line('own', '.2f')}\n{'':<29}"
              f"{two.line('2 steps', '.2f')}", flush=True)


def variant_rows(args: argparse.Namespace, root: Path) -> None:
    print(f"\n{'gan-qp with':<16} x plain gan-qp")
    for v in args.variants:
        s = ratio(args, ["objective=gan-qp", *VARIANTS[v]], ["objective=gan-qp"], root)
        print(f"{v:<16} {s.line('s/iter ratio', '.2f')}", flush=True)


def arch_rows(args: argparse.Namespace, root: Path) -> None:
    keys = [f"arch.width={args.width}"]
    width, n_res, n_r3 = equal_resnet_width(keys, args.res)
    # 3-channel images (as the counts above), R3GAN's kind of data
    arch = argparse.Namespace(**{**vars(args), "arch": "r3gan", "data": "stacked-digits"})
    resnet = ["arch=resnet", f"arch.width={width:.4f}"]
    # images/s ratio = inverse of the seconds-per-iteration ratio (the same objective, batch
    # and critic steps on both sides)
    s = Spread.of([1.0 / x for x in measure_pairs(
        lambda: seconds_per_iter(arch, ["objective=rpgan"], root),
        lambda: seconds_per_iter(arch, ["objective=rpgan", *resnet], root), args.pairs)])
    print(f"\nobjective=rpgan (R1 + R2) at res {args.res}: arch=r3gan arch.width={args.width} "
          f"({n_r3:,} parameters) against arch=resnet arch.width={width:.4f} ({n_res:,})")
    print(s.line("images/s, r3gan / resnet"), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objectives", nargs="*", default=OBJECTIVES,
                   help="objectives to time against gan-qp (none: skip the table)")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS),
                   help="gan-qp variants to time (none: skip the table)")
    p.add_argument("--archs", action="store_true",
                   help="also arch=r3gan against arch=resnet at equal parameter count")
    p.add_argument("--arch", default="gan-qp")
    p.add_argument("--data", default="digits")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=5, help="iterations before timing")
    p.add_argument("--timed", type=int, default=20, help="timed iterations")
    p.add_argument("--pairs", type=int, default=5, help="alternated pairs per ratio")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: steadier timings on a shared machine; 0: torch's)")
    args = p.parse_args()
    print(f"arch={args.arch} res={args.res} width={args.width} batch={args.batch} "
          f"device={args.device} threads={args.threads}; {args.pairs} alternated pairs of "
          f"runs of {args.timed} timed iterations; {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.objectives:
            objective_rows(args, Path(tmp))
        if args.variants:
            variant_rows(args, Path(tmp))
        if args.archs:
            arch_rows(args, Path(tmp))
    print(f"at the end: {load_average()}")


def d_steps(objective: str) -> int:
    from hydra import compose, initialize_config_module
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        return int(compose("train", overrides=[f"objective={objective}"]).objective.d_steps)


if __name__ == "__main__":
    main()
