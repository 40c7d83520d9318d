"""Regularisers added to any objective's critic loss (`reg.*`, 0 = off).

- R1 / R2 (Mescheder et al. 2018): gamma/2 * E||grad_x T(x)||^2 on real (R1) or fake (R2)
  samples. With `every` = k > 1 they are applied on every k-th critic step only, multiplied
  by k (lazy regularisation, as StyleGAN2 / NVlabs' `--gamma`), so their average weight is
  unchanged.
- LeCam (Tseng et al. 2021): lambda * (E[relu(T(x_r) - a_F)^2] + E[relu(a_R - T(x_f))^2])
  with a_R, a_F exponential moving averages (decay `lecam_decay`) of the critic's mean score
  on reals and fakes, updated with the current batch before use; the first batch sets them.

T(x) is `objective.critic_score` (a pair critic scores a batch against the other side, a
joint critic scores (x, code)), so no code here knows which objective runs. What the step's
loss already computed and shared (objectives.shared: its fake batch, the critic's scores on
its real and fake batches) is reused: R2 differentiates the critic at the step's own fakes
and LeCam takes the loss's scores, so neither generates G(z) or runs the critic again. Only
where an objective shares nothing is the fake batch regenerated from the step's z.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ganqp_cli import distributed as dist_
from ganqp_cli.keyspec import NON_NEGATIVE, check_node, number, whole
from ganqp_cli.objectives.gradients import input_gradient
from ganqp_cli.objectives.losses import full
from ganqp_cli.objectives.shared import Shared

Stats = dict[str, torch.Tensor]


def grad_sq(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """E_i ||grad_{x_i} score(x)_i||^2, differentiable in the critic's parameters."""
    x = x.detach().requires_grad_(True)
    (grad,) = input_gradient(score(x), x)  # loss-scaled under fp16
    return grad.flatten(1).square().sum(1).mean()


class Regularizers:
    KEYS = {"r1": NON_NEGATIVE, "r2": NON_NEGATIVE, "every": whole(1), "lecam": NON_NEGATIVE,
            "lecam_decay": number(0, 1, high_open=True)}

    def __init__(self, r1: float = 0.0, r2: float = 0.0, every: int = 1, lecam: float = 0.0,
                 lecam_decay: float = 0.99) -> None:
        self.r1, self.r2, self.every = float(r1), float(r2), int(every)
        self.lecam, self.decay = float(lecam), float(lecam_decay)
        self.anchors: torch.Tensor | None = None  # (a_R, a_F)
        self.last: Stats = {}  # the lazy terms' last values, logged on every step
        self.restored: dict[str, float] = {}  # ... as a checkpoint holds them
        self.scheduled = False  # schedule.r1/r2/lecam may raise a weight from 0 later on

    @property
    def active(self) -> bool:
        return self.scheduled or self.r1 > 0 or self.r2 > 0 or self.lecam > 0

    def critic_penalty(self, objective: Any, models: torch.nn.Module, real: torch.Tensor,
                       z: torch.Tensor, step: int, seen: Shared | None = None
                       ) -> tuple[torch.Tensor, Stats]:
        """(what to add to the critic loss, stats) for critic step number `step`; `seen`:
        what the step's loss shared."""
        total = real.new_zeros((), dtype=torch.float32)
        if not self.active:
            return total, {}
        if self.restored:  # a resumed run: on the run's device, as a fresh value would be
            self.last.update({k: torch.tensor(v, dtype=torch.float32, device=real.device)
                              for k, v in self.restored.items()})
            self.restored = {}
        seen = seen or Shared()
        lazy = step % self.every == 0
        scores = seen.real_score is not None and seen.fake_score is not None
        fake = seen.fake
        if fake is None and ((self.lecam > 0 and not scores) or (lazy and (
                self.r2 > 0 or (self.r1 > 0 and objective.scores_need_other)))):
            with torch.no_grad():
                fake = objective.fake_batch(models, z)
        if self.r1 > 0 and lazy:
            pen = self.r1 / 2 * grad_sq(
                lambda x: objective.critic_score(models, x, other=fake), real)
            total = total + self.every * pen
            self.last["reg_r1"] = pen.detach()
        if self.r2 > 0 and lazy:
            pen = self.r2 / 2 * grad_sq(
                lambda x: objective.critic_score(models, x, z=z, other=real), fake)
            total = total + self.every * pen
            self.last["reg_r2"] = pen.detach()
        if self.lecam > 0:
            s_r, s_f = (seen.real_score, seen.fake_score) if scores else (
                objective.critic_score(models, real, other=fake),
                objective.critic_score(models, fake, z=z, other=real))
            pen = self.lecam * self._lecam(full(s_r), full(s_f))
            total = total + pen
            self.last["reg_lecam"] = pen.detach()
        return total, dict(self.last)

    def _lecam(self, s_r: torch.Tensor, s_f: torch.Tensor) -> torch.Tensor:
        means = dist_.mean_over_ranks(torch.stack([s_r.mean(), s_f.mean()]).detach().float())
        self.anchors = means if self.anchors is None else torch.lerp(
            means, self.anchors.to(means.device), self.decay)
        a_real, a_fake = self.anchors[0], self.anchors[1]
        return F.relu(s_r - a_fake).square().mean() + F.relu(a_real - s_f).square().mean()

    def state_dict(self) -> dict[str, Any]:
        anchors = None if self.anchors is None else self.anchors.tolist()
        return {"lecam_anchors": anchors,
                "last": {**{k: v.item() for k, v in self.last.items()}, **self.restored}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        anchors = state.get("lecam_anchors")
        self.anchors = None if anchors is None else torch.tensor(anchors, dtype=torch.float32)
        # Kept as numbers until the next penalty puts them on its device: CPU tensors
        # would enter the log's (GPU) collective.
        self.last, self.restored = {}, {k: float(v) for k, v in state.get("last", {}).items()}


def validate_reg(node: DictConfig | Mapping) -> None:
    """Refuse a bad `reg.*` value (a negative weight, every < 1, ...) before any work."""
    check_node(node, "reg", cls=Regularizers)


def build_regularizers(node: DictConfig | Mapping | None) -> Regularizers:
    if node is None:
        return Regularizers()
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return Regularizers(**values)
