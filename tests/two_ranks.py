"""What tests/test_two_ranks.py runs on each of two gloo processes (one spawn, to pay the
start-up once): each scenario's result, or its traceback, goes to rank-numbered files.

- `penalties`: one critic and one generator update of the real loop (`update`, the bucketed
  gradient exchange, arch.sync_bn) for each gradient penalty through a BatchNorm critic, on
  this rank's half of a fixed global batch: the losses and the averaged gradients.
- `syncs`: blocking calls per plain iteration (global BatchNorm with R1 through it, the
  gradient exchange, the stop flag), and both ranks stopping at the same round when only
  rank 1 got a signal.
- `checkpoint`: rank 0 fails to write a checkpoint; every rank must raise at once.
- `exchange`: GradExchange alone, one parameter per bucket, one parameter without a
  gradient, and a NaN loss on rank 1 only.

Buckets are made small (a few KB) so that the tiny networks' gradients travel in several
buckets, started while backward runs, as a real network's do.
"""

from __future__ import annotations

import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module

from ganqp_cli import distributed as dist_
from ganqp_cli import grad_exchange
from ganqp_cli.data import Batches
from ganqp_cli.errors import RunFailed
from ganqp_cli.training import guard as guard_mod
from ganqp_cli.training.periodic import Periodic
from ganqp_cli.training.phases import Guard, phases, set_trainable, update
from ganqp_cli.training.setup import Setup, seed_all
from ganqp_cli.training.signals import StopSignals

TINY = ["res=16", "arch.width=0.125", "train.batch_size=8", "train.workers=0", "device=cpu"]
GLOBAL = 8
PENALTIES = {  # every penalty through a BatchNorm critic (sync_bn differentiated twice)
    "r1": ["objective=gan-qp", "reg.r1=1"],
    "r2": ["objective=gan-qp", "reg.r2=1"],
    "wgan-gp": ["objective=wgan-gp", "arch.d_norm=bn"],
    "wgan-div": ["objective=wgan-div", "arch.d_norm=bn"],
    "bigan-qp-r1": ["objective=bigan-qp", "reg.r1=1"],
    "o-gan-r2": ["objective=o-gan", "reg.r2=1"],
}


def setup(overrides: list[str]) -> Setup:
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *overrides])
    seed_all(0)
    return Setup(cfg, dist_.current(), torch.device("cpu"))


def penalty_step(overrides: list[str]) -> dict[str, Any]:
    """One critic and one generator update on this rank's rows of a fixed global batch:
    {"d_loss", "g_loss": the losses averaged over ranks, "d_grad", "g_grad": the gradients
    the optimisers used, flattened}."""
    d = dist_.current()
    s = setup([*overrides, f"arch.sync_bn={str(d.enabled).lower()}"])
    real = s.data.to_model(s.data.tensor[:GLOBAL])
    z = torch.randn(GLOBAL, s.z_dim, generator=torch.Generator().manual_seed(1))
    rows = slice(d.rank * GLOBAL // d.world, (d.rank + 1) * GLOBAL // d.world)
    out: dict[str, Any] = {}
    for phase, name in zip(phases(s), "dg", strict=True):
        set_trainable(phase.frozen, False)
        set_trainable(phase.trains, True)
        loss, _, ok = update(s, phase, real[rows], z[rows])
        assert bool(ok), f"{overrides}: the {phase.name} update was skipped"
        out[f"{name}_loss"] = float(dist_.mean_over_ranks(loss.detach().float()))
        out[f"{name}_grad"] = torch.cat([p.grad.flatten() for p in phase.params
                                         if p.grad is not None]).clone()
    return out


def penalties() -> dict[str, Any]:
    return {name: penalty_step(overrides) for name, overrides in PENALTIES.items()}


def syncs() -> dict[str, Any]:
    from tests.test_syncs import blocking_calls
    guard_mod.HOST_READ_IS_FREE = set()  # the device paths a GPU run takes
    try:
        with StopSignals() as stop:
            c = blocking_calls(["objective=gan-qp", "arch.sync_bn=true", "reg.r1=1"],
                               stop=stop)
            if dist_.current().rank == 1:  # a signal that reached rank 1 alone
                stop.requested = 15
            answers = [stop.should_stop() for _ in range(3)]
    finally:
        guard_mod.HOST_READ_IS_FREE = {"cpu"}
    return {"count": c.count, "report": c.report(), "answers": answers, "agreed": stop.agreed}


def checkpoint(run_dir: Path) -> dict[str, Any]:
    """run_dir/checkpoints is a file, so rank 0 cannot write into it."""
    d = dist_.current()
    s = setup(["objective=gan-qp"])
    batches = Batches(s.data, s.local_batch, 0, s.device, d.rank, d.world, workers=0)
    periodic = Periodic(s, run_dir, None, batches, None, {}, Guard(5))
    try:
        periodic.save("last.pt", 1, numbered=True)
    except RunFailed as err:
        return {"raised": str(err)}
    return {"raised": None}


def exchange_inputs(rank: int) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    spare = torch.nn.Linear(3, 3)  # trained by the phase, unused by this loss
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(10 + rank))
    return net, spare, x


def exchange() -> dict[str, Any]:
    d = dist_.current()
    net, spare, x = exchange_inputs(d.rank)
    params = [*net.parameters(), *spare.parameters()]
    ex = grad_exchange.GradExchange(params, d.world, first_mb=1e-5, mb=1e-5)
    out = {"buckets": len(ex.buckets)}
    # The NaN is a constant: finite gradients, so only the loss's flag can carry it.
    for name, poison in (("clean", 0.0), ("nan_on_rank_1", float("nan"))):
        loss = net(x).square().mean() + (poison if d.rank == 1 else 0.0)
        for p in params:
            p.grad = None
        ex.arm(loss)
        loss.backward()
        out[name] = {"ok": bool(ex.finish()),
                     "grads": [None if p.grad is None else p.grad.clone() for p in params]}
    return out


def channels_last() -> dict[str, Any]:
    """A channels_last convolution's gradient through the exchange: its strides and values."""
    d = dist_.current()
    conv = channels_last_inputs(d.rank)[0]
    ex = grad_exchange.GradExchange(list(conv.parameters()), d.world)
    x = channels_last_inputs(d.rank)[1]
    loss = conv(x).square().mean()
    ex.arm(loss)
    loss.backward()
    ok = bool(ex.finish())
    return {"ok": ok, "weight": (conv.weight.stride(), conv.weight.grad.stride()),
            "grads": [p.grad.clone() for p in conv.parameters()]}


def channels_last_inputs(rank: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(20 + rank))
    return conv, x.contiguous(memory_format=torch.channels_last)


def main(rank: int, world: int, init: str, out: str, run_dir: str) -> None:
    # A scenario that fails on one rank leaves the other in a collective: a short timeout
    # turns that into an error instead of a hang.
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                                         timeout=timedelta(seconds=120))
    results: dict[str, Any] = {}
    grad_exchange.FIRST_MB = grad_exchange.BUCKET_MB = 0.004  # several buckets
    try:
        for name, fn in (("exchange", exchange), ("channels_last", channels_last),
                         ("penalties", penalties), ("syncs", syncs),
                         ("checkpoint", lambda: checkpoint(Path(run_dir)))):
            try:
                results[name] = fn()
            except Exception:  # noqa: BLE001 - reported by the test that reads it
                results[name] = {"error": traceback.format_exc()}
    finally:
        torch.save(results, Path(out) / f"rank{rank}.pt")
        torch.distributed.destroy_process_group()
