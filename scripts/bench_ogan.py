"""The extra cost of O-GAN over its base objective GAN-QP: seconds per training iteration of
each, measured in one run, and their ratio (the paper's claim: almost none).

Both run the training loop's own iteration (ganqp_cli.training.phases.iteration on a Setup:
same networks, data stream, optimiser, critic steps and EMA) with identical settings,
O-GAN's own (1 critic step, RMSprop(1e-4)), so the difference is O-GAN's: a critic with
z_dim outputs and the correlation term in both losses. Timed blocks of --iters iterations
run in alternated pairs (scripts/paired.py: O-GAN then GAN-QP, GAN-QP then O-GAN, ...);
the script prints the per-pair ratio's median, min and max, and the medians of the odd and
the even pairs (a stability check).

    python scripts/bench_ogan.py                     # digits, 32 px, width 0.25, CPU or GPU
    python scripts/bench_ogan.py --res 128 --width 1 --data folder --root DIR   # reference size
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from ganqp_cli.data import Batches
from ganqp_cli.distributed import Dist, device_for
from ganqp_cli.training.phases import Guard, iteration, phases
from ganqp_cli.training.setup import Setup, seed_all

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import Spread, load_average, measure_pairs  # noqa: E402


def compose_for(objective: str, args: argparse.Namespace):
    overrides = [f"objective={objective}", f"data={args.data}", f"res={args.res}",
                 f"arch.width={args.width}", f"train.batch_size={args.batch}"]
    if args.root:
        overrides.append(f"data.root={args.root}")
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def build(args: argparse.Namespace, device: torch.device) -> dict[str, Setup]:
    ogan, ganqp = compose_for("o-gan", args), compose_for("gan-qp", args)
    # O-GAN's critic steps and optimisers for both: only the objective differs.
    for key in ("d_steps", "opt_d", "opt_g"):
        ganqp.objective[key] = ogan.objective[key]
    setups = {}
    for name, cfg in (("gan-qp", ganqp), ("o-gan", ogan)):
        seed_all(0)
        setups[name] = Setup(cfg, Dist(), device)
    return setups


def run_iters(s: Setup, batches: Batches, n: int) -> float:
    """n iterations of the training loop's own `iteration`; returns seconds per iteration."""
    plan, guard = phases(s), Guard(1)
    b = s.local_batch
    sync = torch.cuda.synchronize if s.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for it in range(n):
        iteration(s, plan, batches, lambda: torch.randn(b, s.z_dim, device=s.device), guard, it)
    sync()
    return (time.perf_counter() - start) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--root", default=None, help="data.root for data sets on disk")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=10, help="iterations per timed block")
    p.add_argument("--pairs", type=int, default=15, help="alternated pairs of timed blocks")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"start: {load_average()}")
    device = device_for(args.device, Dist())
    names = ("o-gan", "gan-qp")
    setups = build(args, device)
    streams = {name: Batches(s.data, args.batch, 0, device, workers=4)
               for name, s in setups.items()}
    for name in names:  # warm-up: allocator, cuDNN autotuning, first batches
        run_iters(setups[name], streams[name], max(2, args.iters // 4))
    times: dict[str, list[float]] = {name: [] for name in names}

    def block(name: str):
        def run() -> float:
            times[name].append(run_iters(setups[name], streams[name], args.iters))
            return times[name][-1]
        return run

    ratios = measure_pairs(block("o-gan"), block("gan-qp"), args.pairs)
    print(f"device {device}, data {args.data} at {args.res} px, arch width {args.width}, "
          f"batch {args.batch}, {torch.get_num_threads()} threads, {args.pairs} pairs of "
          f"{args.iters}-iteration blocks (1 critic step + 1 generator step, RMSprop)")
    for name in names:
        print(f"  {name:7s} s/iter: median {statistics.median(times[name]):.4f} "
              f"(min {min(times[name]):.4f}, max {max(times[name]):.4f})")
    print(Spread.of(ratios).line("O-GAN / GAN-QP seconds per iteration"))
    print(f"end: {load_average()}")


if __name__ == "__main__":
    main()
