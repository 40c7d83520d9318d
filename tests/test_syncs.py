"""No host synchronisation in a plain training iteration (one that logs, samples and saves
nothing): every objective family, the regularisers, both augmentations, fp32, bf16 and fp16,
in one process (two: tests/test_two_ranks.py), counted by ganqp_cli.training.syncs
(Tensor.item, bool(t), float(t), tolist, printing, nonzero, masked indexing,
torch.cuda.synchronize, ...).

The CPU waits for nothing, so the guard reads its flag on the host there; these tests turn
that off (guard.HOST_READ_IS_FREE) and run the device paths a GPU run takes: the bitwise
restore for torch's default Adam, `found_inf` for the fused one. The counter itself is
checked against calls that do block.
"""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

from ganqp_cli import distributed as dist_
from ganqp_cli.data import Batches
from ganqp_cli.training import guard as guard_mod
from ganqp_cli.training.phases import Guard, iteration, phases
from ganqp_cli.training.setup import Setup, seed_all
from ganqp_cli.training.signals import StopSignals
from ganqp_cli.training.syncs import SyncCounter, host_state

TINY = ["res=16", "arch.width=0.125", "train.batch_size=8", "train.workers=0", "device=cpu"]
FAMILIES = [  # one per objective class, with the regularisers and augmentations spread over
    ["objective=gan-qp", "reg.r1=1", "reg.r2=1", "reg.lecam=0.1", "aug=ada",
     "aug.interval=1", "aug.kimg=0.01"],                      # BatchNorm critic, ADA moving p
    ["objective=gan-qp", "objective.critic=pair", "reg.r1=1", "reg.every=2"],
    ["objective=wgan"],                                       # weight clipping
    ["objective=wgan-gp", "aug=diffaugment"],
    ["objective=wgan-div"],
    ["objective=sgan-sn", "reg.lecam=0.1"],                   # spectral norm
    ["objective=lsgan-sn"],
    ["objective=hinge-sn", "reg.r2=1"],
    ["objective=fgan-kl"],
    ["objective=bigan-qp", "reg.r1=1"],
    ["objective=o-gan", "reg.lecam=0.1"],
]


def _setup(overrides: list[str], world: dist_.Dist) -> Setup:
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *overrides])
    seed_all(0)
    return Setup(cfg, world, torch.device("cpu"))


def blocking_calls(overrides: list[str], iters: int = 2, stop: StopSignals | None = None
                   ) -> SyncCounter:
    """Blocking calls in `iters` iterations (and stop-flag rounds) after warm-up: until
    both optimisers have stepped once (their state is made then, on the host's say; fp16's
    first updates overflow and are skipped)."""
    d = dist_.current()
    s = _setup(overrides, d)
    plan, guard = phases(s), Guard(10)
    batches = Batches(s.data, s.local_batch, 0, s.device, d.rank, d.world, workers=0)

    def draw_z() -> torch.Tensor:
        return dist_.global_randn(s.local_batch, s.z_dim, device=s.device)

    def one(it: int) -> None:
        if stop is not None:
            stop.should_stop()
        iteration(s, plan, batches, draw_z, guard, it)

    it = 0
    while it < 2 or not all(phase.stepper.stepped for phase in plan):
        one(it)
        it += 1
        assert it < 20, "an optimiser never stepped"
    with SyncCounter(host=host_state([s.opt_d, s.opt_g])) as counter:
        for k in range(it, it + iters):
            one(k)
    guard.check()  # no divergence (fp16's first updates overflow and are skipped: counted)
    return counter


@pytest.fixture
def device_paths(monkeypatch):
    monkeypatch.setattr(guard_mod, "HOST_READ_IS_FREE", set())


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: "+".join(x.split("=")[1]
                                                                      for x in f[:2]))
def test_a_plain_iteration_reads_nothing_back_from_the_device(device_paths, family, amp):
    c = blocking_calls([*family, f"train.amp={amp}"])
    assert c.count == 0, c.report()


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["train.amp=fp16", "reg.r1=1"],  # GradScaler, its scale in the penalty's gradient
    ["+objective.opt_d.fused=true", "+objective.opt_g.fused=true", "arch.sn=true"],
    ["objective=wgan", "objective.opt_d._target_=torch.optim.SGD",
     "+objective.opt_d.fused=true"],  # weight clipping after the step
], ids=["fp16", "fused-adam", "fused-sgd-clip"])
def test_fp16_and_fused_optimisers_read_nothing_either(device_paths, extra):
    c = blocking_calls(extra)
    assert c.count == 0, c.report()


def test_the_counter_counts_what_blocks_and_once_each():
    x = torch.randn(5)
    host = x[:1]
    with SyncCounter(host=[host]) as c:
        x.sum().item()
        bool(x.sum() > 0)
        float(x[0])
        x.tolist()
        x[x > 0]  # boolean-mask indexing: a nonzero on the device
        f"{x.sum():.3f}"  # formatting calls item inside: counted once
        host.item()  # a host tensor of a GPU run (given as `host`): not counted
    assert c.count == 6, c.report()
    assert all("test_syncs.py" in site for site in c.sites), c.report()
    with SyncCounter() as c:
        y = (x * 2).exp().sum()  # queued work only
        x[1:3] += y
    assert c.count == 0
    assert torch.Tensor.item is torch._C.TensorBase.item  # put back as it was
