"""One training iteration, driven from a list of phases.

A phase is one player's update: the modules it trains (the others are frozen), its loss (the
objective's `critic_loss` or `generator_loss`), optimiser, grad scaler and how many times it
runs per iteration. An iteration runs the phases in order (critic `objective.d_steps` times,
then the generator once), each update on a fresh real batch and fresh z, then moves the EMA
generator. Everything that trains, benchmarks included, calls `iteration`.

An update whose loss or gradients are not finite is skipped, on every rank alike (the
finiteness flag travels with the all-reduced gradients), and the buffers its forward pass
touched (BatchNorm statistics, spectral-norm vectors) are put back; `Guard` counts the
skipped updates and stops the run after `train.nan_patience` in a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ganqp_cli import distributed as dist_
from ganqp_cli.errors import RunFailed
from ganqp_cli.objectives import Models, gradients
from ganqp_cli.objectives.base import Stats
from ganqp_cli.training.setup import Setup

LossFn = Callable[[Models, torch.Tensor, torch.Tensor], tuple[torch.Tensor, Stats]]
PenaltyFn = Callable[[Models, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, Stats]]


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


def phases(s: Setup) -> list[Phase]:
    """The critic phase, then the generator phase (which the objective's losses define)."""
    obj, d_steps = s.objective, int(s.cfg.objective.d_steps)

    def penalty(m: Models, real: torch.Tensor, z: torch.Tensor, step: int
                ) -> tuple[torch.Tensor, Stats]:
        return s.reg.critic_penalty(obj, m, real, z, step)

    def adapt(real: torch.Tensor, z: torch.Tensor) -> None:
        s.aug.update(obj, s.models, real, z, seen=int(s.cfg.train.batch_size) * d_steps)

    return [
        Phase("critic", obj.critic_loss, s.d_mods, s.g_mods, s.d_params, s.opt_d, s.scaler_d,
              d_steps, "d_loss", "", obj.after_critic_step,
              penalty if s.reg.active else None, adapt),
        Phase("generator", obj.generator_loss, s.g_mods, s.d_mods, s.g_params, s.opt_g,
              s.scaler_g, 1, "g_loss", "g_", lambda m: None),
    ]


def set_trainable(modules: list[nn.Module], on: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(on)


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, beta: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)


def ema_decay(target: float, it: int) -> float:
    """The EMA decay at iteration `it`: ramped up early so that the EMA generator is not
    dominated by the random initial weights."""
    return min(target, (1 + it) / (10 + it))


class Guard:
    """Counts skipped (non-finite) updates; raises RunFailed once one phase has skipped
    `patience` updates in a row (a critic stuck at NaN while the generator's updates stay
    finite has diverged as surely as both)."""

    def __init__(self, patience: int) -> None:
        self.patience, self.skipped = patience, 0
        self.in_a_row: dict[str, int] = {}

    def record(self, ok: bool, phase: str, it: int) -> None:
        if ok:
            self.in_a_row[phase] = 0
            return
        n = self.in_a_row[phase] = self.in_a_row.get(phase, 0) + 1
        self.skipped += 1
        if n >= self.patience:
            raise RunFailed(
                f"training diverged: {n} {phase} updates in a row had a non-finite loss "
                f"or gradient (the last in iteration {it + 1}); every one "
                "was skipped, so checkpoints/last.pt holds the last good state. Lower the "
                "learning rates (objective.opt_d.lr, objective.opt_g.lr), try train.amp=off, "
                "or raise train.nan_patience.")


def _buffers(models: Models) -> list[torch.Tensor]:
    """Every buffer a forward pass may move: BatchNorm statistics and counts (the count
    weighs the cumulative average when momentum is None), spectral-norm vectors."""
    return list(models.buffers())


def update(s: Setup, phase: Phase, real: torch.Tensor, z: torch.Tensor, step: int = 0
           ) -> tuple[torch.Tensor, Stats, bool]:
    """One optimiser step of `phase` (its `step`-th of the run); returns (loss, statistics,
    whether it was applied)."""
    buffers = _buffers(s.models)
    saved = [b.clone() for b in buffers]
    with s.autocast(), gradients.scaling(phase.scaler):  # input_gradient reads the scaler
        loss, stats = phase.loss(s.models, real, z)
        total = loss
        if phase.penalty is not None:
            extra, reg_stats = phase.penalty(s.models, real, z, step)
            total, stats = loss + extra, {**stats, **reg_stats}
    phase.opt.zero_grad(set_to_none=True)
    phase.scaler.scale(total).backward()
    # Under torchrun the flat all-reduced gradients carry the loss's finiteness too, so every
    # rank reaches the same decision; scaling by the AMP scale keeps finiteness as it is.
    flat = dist_.all_reduce_grads(phase.params, flag=total.detach())
    ok = bool(torch.isfinite(flat).all() if flat is not None
              else _all_finite(phase.params, total))
    if phase.scaler.is_enabled():
        phase.scaler.unscale_(phase.opt)
    if ok:
        phase.scaler.step(phase.opt)
        phase.after_step(s.models)
    elif buffers:
        torch._foreach_copy_(buffers, saved)
    phase.scaler.update()  # on a skipped fp16 step: a smaller scale
    return loss, stats, ok


def _all_finite(params: list[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    peaks = list(torch._foreach_norm(grads, float("inf"))) if grads else []
    return torch.isfinite(torch.stack([loss.detach().float().reshape(()), *peaks])).all()


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
            loss, stats, ok = update(s, phase, real, z, it * phase.repeat + n)
            guard.record(ok, phase.name, it)
            if ok:
                logged.append(({phase.loss_key: loss,
                                **{phase.prefix + k: v for k, v in stats.items()}},
                               1.0 / phase.repeat))
        if phase.after_phase is not None:
            phase.after_phase(real, z)
    if s.keeps_ema:
        beta = s.schedule.ema_beta  # a scheduled EMA replaces train.ema and its ramp
        update_ema(s.ema, s.models.G,
                   ema_decay(float(s.cfg.train.ema), it) if beta is None else beta)
    return logged
