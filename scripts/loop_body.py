"""The body of `ganqp train`'s loop, built from config overrides, for benchmarks that time
it in one process. A library, not a command (bench_train.py and bench_objectives.py use it).

`loop_body(overrides, device)` composes the train config with the overrides, builds the
Setup (networks, objective, optimisers, augmentation, regularisers, schedules) and returns
a function running one iteration as training.loop.run does: `iteration` (every phase, the
guard, the EMA) and the statistics meter, read and reset every `log_every` iterations with
the guard's counts, as a log line does. The periodic work of sample, FID and checkpoint
steps is left out: benchmarks time the iterations, not the writes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def compose_train(overrides: list[str]):  # noqa: ANN201 - a DictConfig
    from hydra import compose, initialize_config_module
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def loop_body(overrides: list[str], device: torch.device, log_every: int = 10,
              seed: int = 0) -> Callable[[], None]:
    """One training iteration of the composed config per call (in-memory batches, no
    loader workers)."""
    from ganqp_cli import distributed as dist_
    from ganqp_cli.data import Batches
    from ganqp_cli.training.loop import configure_backends
    from ganqp_cli.training.periodic import Meter
    from ganqp_cli.training.phases import Guard, iteration, phases
    from ganqp_cli.training.setup import Setup, seed_all
    cfg = compose_train([f"device={device.type}", "train.workers=0", *overrides])
    d = dist_.init_process_group(device.type)
    configure_backends(cfg, device)
    seed_all(seed)
    s = Setup(cfg, d, device)
    batches = Batches(s.data, s.local_batch, seed, device, d.rank, d.world, workers=0,
                      labels=s.classes is not None, memory_format=s.memory_format)
    plan, guard, meter, it = phases(s), Guard(int(cfg.train.nan_patience)), Meter(), [0]

    def draw_z() -> torch.Tensor:
        return dist_.global_randn(s.local_batch, s.z_dim, device=device)

    def step() -> None:
        meter.add(iteration(s, plan, batches, draw_z, guard, it[0]))
        it[0] += 1
        if it[0] % log_every == 0:
            guard.check()
            meter.reduce()
    return step


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU) before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
