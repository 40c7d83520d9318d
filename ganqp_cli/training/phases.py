"""One training iteration, driven from a list of phases.

A phase is one player's update: the modules it trains (the others are frozen), its loss (the
objective's `critic_loss` or `generator_loss`), optimiser, grad scaler and how many times it
runs per iteration. An iteration runs the phases in order (critic `objective.d_steps` times,
then the generator once), each update on a fresh real batch and fresh z, then moves the EMA
generator. Everything that trains, benchmarks included, calls `iteration`.

An iteration that logs, samples and saves nothing reads nothing back from the device: an
update whose loss or gradients are not finite is skipped on the device, on every rank alike
(training.guard), its statistics are zeroed rather than dropped, and the counts are read at
log steps. Under torchrun the gradients are averaged while backward runs (grad_exchange).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ganqp_cli.grad_exchange import GradExchange
from ganqp_cli.networks.conditional import conditioned
from ganqp_cli.objectives import Models, gradients, shared
from ganqp_cli.objectives.base import Stats
from ganqp_cli.training.guard import Guard, Snapshot, Stepper, on_host
from ganqp_cli.training.setup import Setup

__all__ = ["Guard", "Phase", "iteration", "phases", "update"]

LossFn = Callable[[Models, torch.Tensor, torch.Tensor], tuple[torch.Tensor, Stats]]
PenaltyFn = Callable[[Models, torch.Tensor, torch.Tensor, int, shared.Shared],
                     tuple[torch.Tensor, Stats]]


@dataclass
class Phase:
    name: str
    loss: LossFn
    trains: list[nn.Module]
    frozen: list[nn.Module]
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    repeat: int
    loss_key: str                       # its loss's name in metrics.jsonl
    prefix: str                         # ... and its statistics' prefix
    after_step: Callable[[Models], None]
    # Regularisers added to the loss (reg.*: R1, R2, LeCam), given the phase's step number;
    # logged apart, so the loss keeps its meaning.
    penalty: PenaltyFn | None = None
    # Once after the phase's steps, with the last step's real batch and z (ADA's p).
    after_phase: Callable[[torch.Tensor, torch.Tensor], None] | None = None
    # Under torchrun: the gradient exchange that overlaps backward (None in one process).
    exchange: GradExchange | None = None
    stepper: Stepper | None = None
    buffers: Snapshot = field(default_factory=Snapshot)

    def __post_init__(self) -> None:
        if self.stepper is None:
            self.stepper = Stepper(self.opt, self.params)


def phases(s: Setup) -> list[Phase]:
    """The critic phase, then the generator phase (which the objective's losses define)."""
    obj, d_steps = s.objective, int(s.cfg.objective.d_steps)

    def penalty(m: Models, real: torch.Tensor, z: torch.Tensor, step: int,
                seen: shared.Shared) -> tuple[torch.Tensor, Stats]:
        return s.reg.critic_penalty(obj, m, real, z, step, seen)

    def adapt(real: torch.Tensor, z: torch.Tensor) -> None:
        s.aug.update(obj, s.models, real, z, seen=int(s.cfg.train.batch_size) * d_steps)

    def exchange(params: list[nn.Parameter]) -> GradExchange | None:
        return GradExchange(params, s.dist.world) if s.dist.enabled else None

    return [
        Phase("critic", obj.critic_loss, s.d_mods, s.g_mods, s.d_params, s.opt_d, s.scaler_d,
              d_steps, "d_loss", "", obj.after_critic_step,
              penalty if s.reg.active else None, adapt, exchange(s.d_params)),
        Phase("generator", obj.generator_loss, s.g_mods, s.d_mods, s.g_params, s.opt_g,
              s.scaler_g, 1, "g_loss", "g_", lambda m: None, exchange=exchange(s.g_params)),
    ]


def set_trainable(modules: list[nn.Module], on: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(on)


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, beta: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - beta)
    buffers = list(ema.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(net.buffers()))


def ema_decay(target: float, it: int) -> float:
    """The EMA decay at iteration `it`: ramped up early so that the EMA generator is not
    dominated by the random initial weights."""
    return min(target, (1 + it) / (10 + it))


def update(s: Setup, phase: Phase, real: torch.Tensor, z: torch.Tensor, step: int = 0,
           y: torch.Tensor | None = None) -> tuple[torch.Tensor, Stats, torch.Tensor]:
    """One optimiser step of `phase` (its `step`-th of the run); returns (loss, statistics,
    whether it was applied: a bool tensor on the device). `y`: the real batch's labels
    (cond=true), which the conditional networks read for every call of the step, fakes
    included."""
    phase.buffers.take(list(s.models.buffers()))  # what the forward pass may move
    with s.autocast(), gradients.scaling(phase.scaler), shared.recording() as seen, \
            conditioned(s.models, y):
        loss, stats = phase.loss(s.models, real, z)  # input_gradient reads the scaler
        total = loss
        if phase.penalty is not None:
            extra, reg_stats = phase.penalty(s.models, real, z, step, seen)
            total, stats = loss + extra, {**stats, **reg_stats}
    phase.opt.zero_grad(set_to_none=True)
    if phase.exchange is not None:
        phase.exchange.arm(total)
    phase.scaler.scale(total).backward()
    # Scaling by the AMP scale keeps finiteness as it is.
    ok = phase.exchange.finish() if phase.exchange is not None else \
        _all_finite(phase.params, total)
    if phase.scaler.is_enabled():
        phase.scaler.unscale_(phase.opt)
    keep = on_host(ok)  # a bool where reading the device is free, else the device flag
    phase.stepper.step(keep, lambda: phase.after_step(s.models))
    phase.buffers.put_back_unless(keep)
    phase.scaler.update()  # on a skipped fp16 step: a smaller scale
    return loss, stats, ok


def _all_finite(params: list[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    # An L1 norm is non-finite exactly when an element is (barring a sum past 3.4e38, where
    # Adam's squared moments would have overflowed long before). The max norm says the same,
    # but the CPU has no vectorised kernel for it: 5x the L1's time, 1.7% of a DCGAN
    # iteration at 32 px. Both are one fused kernel per dtype on a GPU. Summed in float32:
    # a half-precision sum would overflow at 65504.
    grads = [p.grad for p in params if p.grad is not None]
    sums = list(torch._foreach_norm(grads, 1, dtype=torch.float32)) if grads else []
    return torch.isfinite(torch.stack([loss.detach().float().reshape(()), *sums])).all()


def _applied(values: dict[str, torch.Tensor], ok: torch.Tensor) -> dict[str, torch.Tensor]:
    """The statistics of an update, zeros where it was skipped (a skipped update adds
    nothing to the log interval's sums, as before; no host read to leave it out)."""
    keys = list(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    return dict(zip(keys, torch.where(ok, stacked, 0.0).unbind(), strict=True))


def iteration(s: Setup, plan: list[Phase], batches: Iterator[torch.Tensor],
              draw_z: Callable[[], torch.Tensor], guard: Guard, it: int
              ) -> list[tuple[dict[str, torch.Tensor], float]]:
    """All phases of iteration `it` (0-based), then the EMA step; returns the statistics
    to log as (values, weight) pairs."""
    logged: list[tuple[dict[str, torch.Tensor], float]] = []
    s.schedule.apply(it)  # schedule.*: host arithmetic on the iteration count, no sync
    for phase in plan:
        set_trainable(phase.frozen, False)
        set_trainable(phase.trains, True)
        for n in range(phase.repeat):
            real, z = next(batches), draw_z()
            y = getattr(batches, "labels", None)  # the batch's labels with cond=true
            loss, stats, ok = update(s, phase, real, z, it * phase.repeat + n, y)
            guard.record(ok, phase.name, it)
            logged.append((_applied({phase.loss_key: loss,
                                     **{phase.prefix + k: v for k, v in stats.items()}}, ok),
                           1.0 / phase.repeat))
        if phase.after_phase is not None:
            with conditioned(s.models, y):
                phase.after_phase(real, z)
    if s.keeps_ema:
        beta = s.schedule.ema_beta  # a scheduled EMA replaces train.ema and its ramp
        update_ema(s.ema, s.models.G,
                   ema_decay(float(s.cfg.train.ema), it) if beta is None else beta)
    return logged
