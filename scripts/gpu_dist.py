"""The GPU check's distributed rows: ganqp's distributed code path (the gradient exchange,
arch.sync_bn, the rank check) on CUDA tensors, with two processes on one GPU.

NCCL refuses two ranks on one GPU, and `ganqp train` under torchrun gives each process its
own GPU, so this script joins a gloo group itself and drives the loop's parts (Setup, the
phases' `update` and `iteration`) as `ganqp train` does. Per case, rank 0 saves the
gradients of one critic update and one generator update on a fixed global batch (each rank
takes its half), and the seconds per training iteration, to OUT; the caller computes the
same updates in one process (`one_process`) and compares.

    python -m torch.distributed.run --standalone --nproc_per_node=2 scripts/gpu_dist.py OUT DEV
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import torch

CASES = {  # name: overrides (amp and TF32 off: the comparison is in float32)
    "mlp, no BatchNorm": ["data=ring8", "arch=mlp", "arch.width=0.25"],
    "gan-qp, arch.sync_bn": ["arch=gan-qp", "arch.width=0.25", "arch.sync_bn=true"],
}
RES = {"cuda": 64, "cpu": 16}  # the image case's resolution
ITERS = {"cuda": 10, "cpu": 1}  # timed iterations
GLOBAL_BATCH = 16


def build(case: str, dev: torch.device, dist):
    from hydra import compose, initialize_config_module

    from ganqp_cli.training.loop import configure_backends
    from ganqp_cli.training.setup import Setup, seed_all
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        res = [] if "data=ring8" in CASES[case] else [f"res={RES[dev.type]}"]
        cfg = compose("train", overrides=[*CASES[case], *res, f"device={dev.type}", "seed=0",
                                          f"train.batch_size={GLOBAL_BATCH}", "train.amp=off",
                                          "train.tf32=false", "train.compile=false",
                                          "train.workers=0"])
    configure_backends(cfg, dev)
    seed_all(0)
    return Setup(cfg, dist, dev)


def gradients(case: str, dev: torch.device, dist) -> dict[str, list[torch.Tensor]]:
    """This rank's averaged gradients after one critic and one generator update."""
    from ganqp_cli.training.phases import phases, set_trainable, update
    s = build(case, dev, dist)
    g = torch.Generator().manual_seed(123)
    shape = tuple(s.data.shape)
    real = (torch.rand(GLOBAL_BATCH, *shape, generator=g) * 2 - 1).to(dev)
    z = torch.randn(GLOBAL_BATCH, s.z_dim, generator=g).to(dev)
    local = GLOBAL_BATCH // dist.world
    part = slice(dist.rank * local, (dist.rank + 1) * local)
    out = {}
    for phase in phases(s):
        set_trainable(phase.frozen, False)
        set_trainable(phase.trains, True)
        update(s, phase, real[part], z[part])
        out[phase.name] = [p.grad.detach().float().cpu().clone() for p in phase.params]
    return out


def seconds_per_iteration(case: str, dev: torch.device, dist, iters: int) -> float:
    from ganqp_cli import distributed as dist_
    from ganqp_cli.data import Batches
    from ganqp_cli.training.phases import Guard, iteration, phases
    s = build(case, dev, dist)
    plan, guard = phases(s), Guard(10**9)
    batches = Batches(s.data, s.local_batch, 0, dev, dist.rank, dist.world, workers=0)

    def draw_z() -> torch.Tensor:
        return dist_.global_randn(s.local_batch, s.z_dim, device=dev)

    for i in range(2):
        iteration(s, plan, batches, draw_z, guard, i)
    dist_.barrier()
    t0 = time.perf_counter()
    for i in range(2, 2 + iters):
        iteration(s, plan, batches, draw_z, guard, i)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dist_.barrier()
    took = (time.perf_counter() - t0) / iters
    dist_.check_ranks_agree({"models": s.models, "ema": s.ema})  # raises when they differ
    return took


def one_process(case: str, dev: torch.device) -> dict[str, list[torch.Tensor]]:
    from ganqp_cli.distributed import Dist
    return gradients(case, dev, Dist())


def main() -> None:
    out, dev_name = sys.argv[1], sys.argv[2]
    from ganqp_cli import distributed as dist_
    # gloo with both ranks on the one GPU (NCCL refuses two ranks per GPU)
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=180))
    dist = dist_.current()
    dev = torch.device(dev_name)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    result = {}
    for case in CASES:
        try:
            result[case] = {"grads": gradients(case, dev, dist),
                            "s_per_it": seconds_per_iteration(case, dev, dist,
                                                              ITERS[dev.type])}
        except Exception as err:  # noqa: BLE001 - the table reports it; the next case runs
            result[case] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    if dist.is_main:
        torch.save(result, out)
    dist_.barrier()
    dist_.shutdown()


if __name__ == "__main__":
    from ganqp_cli.worker_exit import run_as_worker
    run_as_worker(main)
