"""One critic step and one generator step of the real training code (training.setup.Setup
and the phases' `update`) on a fixed global batch, each process taking its slice of it.

Run by tests/test_distributed_more.py: under torchrun (`python tests/dist_step.py OUT`) and
in-process as `step(None)` for one process. Rank 0 saves the gradients and parameters after
each step to OUT.
"""

from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_module

from ganqp_cli import distributed as dist_
from ganqp_cli.training.phases import phases, set_trainable, update
from ganqp_cli.training.setup import Setup, seed_all

# ring8 with the MLP: no BatchNorm anywhere, so per-rank batch statistics play no part.
OVERRIDES = ["data=ring8", "arch=mlp", "arch.width=0.25", "objective=gan-qp", "device=cpu",
             "train.batch_size=8", "seed=0"]
GLOBAL_BATCH = 8


def step(out: str | None) -> dict[str, dict[str, torch.Tensor]]:
    dist = dist_.init_process_group()
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=OVERRIDES)
    seed_all(cfg.seed)
    s = Setup(cfg, dist, torch.device("cpu"))
    g = torch.Generator().manual_seed(123)
    real = 2 * torch.randn(GLOBAL_BATCH, 2, generator=g)
    z = torch.randn(GLOBAL_BATCH, s.z_dim, generator=g)
    local = GLOBAL_BATCH // dist.world
    part = slice(dist.rank * local, (dist.rank + 1) * local)
    result = {}

    def record(name: str, params) -> None:
        result[f"{name}_grad"] = {str(i): p.grad.detach().clone() for i, p in enumerate(params)}
        result[f"{name}_param"] = {str(i): p.detach().clone() for i, p in enumerate(params)}

    for phase, name in zip(phases(s), "dg", strict=True):
        set_trainable(phase.frozen, False)
        set_trainable(phase.trains, True)
        update(s, phase, real[part], z[part])
        record(name, phase.params)
    if out is not None and dist.is_main:
        torch.save(result, out)
    dist_.barrier()
    dist_.shutdown()
    return result


if __name__ == "__main__":
    from ganqp_cli.worker_exit import run_as_worker
    run_as_worker(step, sys.argv[1])
