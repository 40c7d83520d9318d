"""ADA (Karras et al. 2020): the DiffAugment operations, each applied to each critic input
with a probability p that follows the critic's overfitting.

Every `interval` iterations the heuristic r_t = E[sign(T(x_r) - c)] is measured on the last
critic step's real batch (augmented, as the critic trains on it), and p moves by
sign(r_t - target) * (real images the critic saw) / (kimg * 1000), clamped to [0, 1]: p can
go from 0 to 1 in `kimg` thousand images. `target: null` keeps p fixed at `p_init`, or where
`schedule.aug_p` puts it. `c` is the objective's decision threshold (0 for
logits); objectives whose losses see only score differences (WGAN, GAN-QP) have none, and
the mean score of a fake batch takes its place, so r_t is the share of reals the critic
ranks above the fakes' average, less the share below.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganqp_cli import distributed as dist_
from ganqp_cli.augment.pipeline import DiffAugment
from ganqp_cli.keyspec import POSITIVE, number, whole


@torch.no_grad()
def overfitting(objective: Any, models: nn.Module, real: torch.Tensor, z: torch.Tensor
                ) -> torch.Tensor:
    """r_t on one batch: the mean sign of the reals' scores against the threshold."""
    threshold = objective.score_threshold
    fake = None
    if threshold is None or objective.scores_need_other:
        fake = objective.fake_batch(models, z)
    score = objective.critic_score(models, real, other=fake)
    if threshold is None:
        threshold = objective.critic_score(models, fake, z=z, other=real).mean()
    return torch.sign(score - threshold).mean()


class ADA(DiffAugment):
    """Adaptive augmentation; `p` is logged as `aug_p` and checkpointed.

    p and r_t stay tensors on the device between log steps (`probability` hands the tensor
    to the augmentations), so the controller never makes the host wait for the device; the
    arithmetic is float64, as it would be on Python floats."""

    KEYS = {"target": number(0, 1, low_open=True, high_open=True, allow_none=True),
            "p_init": number(0, 1),
            "interval": whole(1), "kimg": POSITIVE}

    def __init__(self, name: str = "ada", policy: Any = ("color", "translation", "cutout"),
                 translation: float = 0.125, cutout: float = 0.5, target: float = 0.6,
                 p_init: float = 0.0, interval: int = 4, kimg: float = 500.0) -> None:
        super().__init__(name, policy, translation, cutout)
        self.target, self.interval, self.kimg = target, interval, kimg
        self._p: float | torch.Tensor = float(p_init)
        self._rt: float | torch.Tensor = 0.0
        self.calls, self.seen = 0, 0

    @property
    def p(self) -> float:
        return float(self._p)  # a host read

    @p.setter
    def p(self, value: float) -> None:
        self._p = float(value)

    @property
    def rt(self) -> float:
        return float(self._rt)

    def probability(self) -> float | torch.Tensor:
        return self._p

    def update(self, objective: Any, models: nn.Module, real: torch.Tensor, z: torch.Tensor,
               seen: int) -> None:
        if self.target is None:  # a fixed p (schedule.aug_p sets it, as R3GAN's)
            return
        self.calls += 1
        self.seen += seen
        if self.calls % self.interval:
            return
        # the same p on every rank
        rt = dist_.mean_over_ranks(overfitting(objective, models, real, z).float()).double()
        step = ((rt > self.target).double() - (rt < self.target).double()) * self.seen
        p = torch.as_tensor(self._p, dtype=torch.float64, device=rt.device)
        self._p = (p + step / (self.kimg * 1000)).clamp(0.0, 1.0)
        self._rt, self.seen = rt, 0

    def stats(self) -> dict[str, float]:
        return {"aug_p": self.p, "aug_rt": self.rt}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "rt": self.rt, "calls": self.calls, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._p, self._rt = float(state["p"]), float(state["rt"])
        self.calls, self.seen = int(state["calls"]), int(state["seen"])
