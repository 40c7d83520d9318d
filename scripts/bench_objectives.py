"""Seconds per training iteration of each objective relative to gan-qp, of gan-qp with each
augmentation and regulariser relative to plain gan-qp, and arch=r3gan's images/s relative to
arch=resnet's at equal parameter count: every figure a ratio over alternated pairs, measured
in one run.

Each side is `ganqp train`'s loop body (scripts/loop_body.py: every phase, the guard, the EMA,
the statistics meter) built from the overrides in this process, on the same arch,
resolution and batch. Every body is built and warmed up first; then each row's two sides are
timed in alternated pairs of one-iteration blocks, pair k of every row before pair k + 1 of
any (scripts/paired.py's interleave), `--pairs` rounds. This machine's speed scatters by
about 10% between any two blocks, whatever their length (4 ms to 3 s), so short blocks and
many pairs pin a median best; and its state changes over minutes, differently for different
work, so each row's pairs are spread over the whole run instead of one minute of it (rows
timed one after the other moved up to 14% between invocations). A ratio is printed as its
median with the minimum, the maximum and the medians of the odd and even pairs. Tables:

- each objective with its own YAML's critic steps (what a user gets: rpgan with the R1 and R2
  of its recipe, wgan-gp with its 5 steps), and all with gan-qp's 2 critic steps (the cost of
  the loss itself, e.g. WGAN-GP's gradient penalty), against gan-qp;
- gan-qp with each augmentation or regulariser (`--variants`), against plain gan-qp;
- `--archs`: objective=rpgan (R1 + R2) on arch=r3gan against arch=resnet, resnet's width
  chosen so that both have the same number of parameters (G + D, within 1%): images/s, at
  `--arch-res`/`--arch-width`/`--arch-batch` (R3GAN's grouped convolutions cost about what
  dense ones do on a CPU: at width 0.25, 32 px, batch 64 one iteration takes minutes).

    python scripts/bench_objectives.py --archs        # CPU: res 32, width 0.25, batch 32
    python scripts/bench_objectives.py --objectives rpgan --variants --pairs 40
    python scripts/bench_objectives.py --objectives --variants --archs     # the arch ratio only
    python scripts/bench_objectives.py --device cuda --res 128 --width 1 --block-iters 20
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_body import compose_train, loop_body, sync  # noqa: E402
from paired import Spread, block_seconds, interleave, load_average  # noqa: E402

OBJECTIVES = ["gan-qp-l2", "rpgan", "wgan", "wgan-gp", "wgan-div", "wgan-sn", "sgan-sn",
              "lsgan-sn", "hinge-sn", "fgan-kl", "fgan-reverse-kl", "fgan-pearson",
              "fgan-hellinger", "fgan-js", "fgan-gan"]
# gan-qp with one augmentation or regulariser (weights are irrelevant to the cost).
VARIANTS = {"aug=diffaugment": ["aug=diffaugment"], "aug=ada": ["aug=ada"],
            "reg.r1": ["reg.r1=1"], "reg.r1 every=16": ["reg.r1=1", "reg.every=16"],
            "reg.r2": ["reg.r2=1"], "reg.r1 + reg.r2": ["reg.r1=1", "reg.r2=1"],
            "reg.lecam": ["reg.lecam=0.1"]}


def base_overrides(args: argparse.Namespace) -> list[str]:
    return [f"arch={args.arch}", f"res={args.res}", f"arch.width={args.width}",
            f"train.batch_size={args.batch}", f"data={args.data}",
            f"train.threads={args.threads}"]


Step = Callable[[], None]


def body(args: argparse.Namespace, overrides: list[str]) -> Step:
    return loop_body([*base_overrides(args), *overrides], torch.device(args.device))


def params(arch: str, keys: list[str], res: int) -> int:
    """G + D parameters of objective=rpgan on `arch` with `keys` (built on the meta device)."""
    from ganqp_cli.config import make
    cfg = compose_train(["objective=rpgan", f"arch={arch}", f"res={res}", "data=stacked-digits",
                         *keys])
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


def objective_rows(args: argparse.Namespace, gan_qp: Step) -> dict[str, tuple[Step, Step]]:
    rows = {}
    for n in args.objectives:
        rows[f"{n} own"] = body(args, [f"objective={n}"]), gan_qp
        rows[f"{n} 2 steps"] = body(args, [f"objective={n}", "objective.d_steps=2"]), gan_qp
    return rows


def variant_rows(args: argparse.Namespace, gan_qp: Step) -> dict[str, tuple[Step, Step]]:
    return {v: (body(args, ["objective=gan-qp", *VARIANTS[v]]), gan_qp) for v in args.variants}


def arch_row(args: argparse.Namespace) -> tuple[str, tuple[Step, Step]]:
    """objective=rpgan on arch=resnet (numerator: images/s is the inverse of s/iteration)
    against arch=r3gan, resnet's width giving the same parameter count."""
    keys = [f"arch.width={args.arch_width}"]
    width, n_res, n_r3 = equal_resnet_width(keys, args.arch_res)
    # 3-channel images (as the counts above), R3GAN's kind of data
    arch = argparse.Namespace(**{**vars(args), "arch": "r3gan", "data": "stacked-digits",
                                 "res": args.arch_res, "width": args.arch_width,
                                 "batch": args.arch_batch})
    resnet = ["arch=resnet", f"arch.width={width:.4f}"]
    title = (f"objective=rpgan (R1 + R2) at res {args.arch_res}, batch {args.arch_batch}: "
             f"arch=r3gan arch.width={args.arch_width} ({n_r3:,} parameters) against "
             f"arch=resnet arch.width={width:.4f} ({n_res:,})")
    return title, (body(arch, ["objective=rpgan", *resnet]), body(arch, ["objective=rpgan"]))


def measure(args: argparse.Namespace, rows: dict[str, tuple[Step, Step]]) -> dict[str, Spread]:
    """Seconds per iteration of each row's first body over its second, in alternated pairs
    of blocks interleaved over all rows (paired.interleave), after --warmup iterations of
    every body."""
    dev = torch.device(args.device)
    warmed: set[int] = set()
    for a, b in rows.values():
        for step in (a, b):
            if id(step) not in warmed:
                for _ in range(args.warmup):
                    step()
                warmed.add(id(step))

    def side(step: Step) -> Callable[[], float]:
        return lambda: block_seconds(step, args.block_iters, lambda: sync(dev))
    t0 = time.perf_counter()

    def progress(k: int) -> None:
        if k % 10 == 0 or k == args.pairs:
            print(f"  round {k}/{args.pairs} of {len(rows)} rows, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    timed = {name: (side(a), side(b)) for name, (a, b) in rows.items()}
    return {name: Spread.of(r) for name, r in interleave(timed, args.pairs, progress).items()}


def print_tables(args: argparse.Namespace, out: dict[str, Spread], arch_title: str | None
                 ) -> None:
    if args.objectives:
        print(f"{'objective':<16} {'own d_steps':>11}  x gan-qp (own critic steps) / x gan-qp "
              "(2 critic steps each), s/iteration")
        for n in args.objectives:
            print(f"{n:<16} {d_steps(n):>11}  {out[f'{n} own'].line('own', '.2f')}\n{'':<29}"
                  f"{out[f'{n} 2 steps'].line('2 steps', '.2f')}")
    if args.variants:
        print(f"\n{'gan-qp with':<16} x plain gan-qp")
        for v in args.variants:
            print(f"{v:<16} {out[v].line('s/iter ratio', '.2f')}")
    if arch_title is not None:
        print(f"\n{arch_title}")
        print(out[arch_title].line("images/s, r3gan / resnet"))


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
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=3, help="iterations of each side before timing")
    p.add_argument("--block-iters", type=int, default=1, help="iterations per timed block")
    p.add_argument("--pairs", type=int, default=60,
                   help="rounds: alternated pairs of blocks per ratio")
    p.add_argument("--arch-res", type=int, default=16, help="--archs: resolution")
    p.add_argument("--arch-width", type=float, default=0.0625, help="--archs: r3gan's width")
    p.add_argument("--arch-batch", type=int, default=16, help="--archs: batch")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: steadier timings on a shared machine; 0: torch's)")
    args = p.parse_args()
    print(f"arch={args.arch} res={args.res} width={args.width} batch={args.batch} "
          f"device={args.device} threads={args.threads}; {args.pairs} alternated pairs of "
          f"blocks of {args.block_iters} iterations, after {args.warmup} warm-up; "
          f"{load_average()}")
    t0 = time.perf_counter()
    rows: dict[str, tuple[Step, Step]] = {}
    if args.objectives or args.variants:
        gan_qp = body(args, ["objective=gan-qp"])
        rows |= objective_rows(args, gan_qp) | variant_rows(args, gan_qp)
    title = None
    if args.archs:
        title, row = arch_row(args)
        rows[title] = row
    print_tables(args, measure(args, rows), title)
    print(f"at the end: {load_average()}; {time.perf_counter() - t0:.0f} s in all")


def d_steps(objective: str) -> int:
    return int(compose_train([f"objective={objective}"]).objective.d_steps)


if __name__ == "__main__":
    main()
