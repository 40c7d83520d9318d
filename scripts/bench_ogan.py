"""The extra cost of O-GAN over its base objective GAN-QP: seconds per training iteration of
each, measured in one run, and their ratio (the paper's claim: almost none).

Both run the training loop's own iteration (ganqp_cli.training.phases.iteration on a Setup:
same networks, data stream, optimiser, critic steps and EMA) with identical settings,
O-GAN's own (1 critic step, RMSprop(1e-4)), so the difference is O-GAN's: a critic with
z_dim outputs and the correlation term in both losses. Timed blocks alternate between the
two to spread any drift in machine load evenly; the ratio is that of the best blocks.

    python scripts/bench_ogan.py                     # digits, 32 px, width 0.25, CPU or GPU
    python scripts/bench_ogan.py --res 128 --width 1 --data folder --root DIR   # reference size
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_module

from ganqp_cli.data import Batches
from ganqp_cli.distributed import Dist, device_for
from ganqp_cli.training.phases import Guard, iteration, phases
from ganqp_cli.training.setup import Setup, seed_all


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
    p.add_argument("--rounds", type=int, default=15, help="timed blocks per objective")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_for(args.device, Dist())
    names = ("gan-qp", "o-gan")
    setups = build(args, device)
    streams = {name: Batches(s.data, args.batch, 0, device, workers=4)
               for name, s in setups.items()}
    for name in names:  # warm-up: allocator, cuDNN autotuning, first batches
        run_iters(setups[name], streams[name], max(2, args.iters // 4))
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            times[name].append(run_iters(setups[name], streams[name], args.iters))
    best = {name: min(v) for name, v in times.items()}
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"device {device}, data {args.data} at {args.res} px, arch width {args.width}, "
          f"batch {args.batch}, {args.rounds} x {args.iters} iterations each "
          f"(1 critic step + 1 generator step, RMSprop)")
    for name in names:
        print(f"  {name:7s} best block {best[name]:.4f} s/iter, median {med[name]:.4f}, "
              f"worst {max(times[name]):.4f}")
    # The best block is the least disturbed by other load on the machine (as timeit does).
    print(f"O-GAN / GAN-QP seconds per iteration: {best['o-gan'] / best['gan-qp']:.3f} "
          f"(best blocks; medians: {med['o-gan'] / med['gan-qp']:.3f})")

if __name__ == "__main__":
    main()
