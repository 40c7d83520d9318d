"""The interface between an objective and the training loop."""

from __future__ import annotations

import torch
from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import text
from ganqp_cli.objectives.losses import full

Stats = dict[str, torch.Tensor]


class Models(nn.Module):
    """The networks of one run: generator G, critic D, and an encoder E where the model has
    one (E may be D itself, as in O-GAN). Its state dict is what checkpoints store."""

    def __init__(self, G: nn.Module, D: nn.Module, E: nn.Module | None = None) -> None:
        super().__init__()
        self.G, self.D = G, D
        # An encoder that *is* the critic is not registered twice.
        self.E = E if E is not None and E is not D else None
        self._e_is_d = E is D

    @property
    def encoder(self) -> nn.Module | None:
        return self.D if self._e_is_d else self.E


class Objective:
    """A GAN objective: what the critic and the generator minimise.

    The loop, for each iteration: `d_steps` times { real batch, fresh z,
    `critic_loss` -> backward -> critic optimiser step -> `after_critic_step` }, then one
    { real batch, fresh z, `generator_loss` -> backward -> generator optimiser step }.
    During the critic phase the generator side's parameters are frozen and vice versa, so
    an objective may call any network without detaching. Losses are minimised; `Stats`
    (detached scalars) are averaged over the log interval and written to metrics.jsonl.
    """

    has_encoder = False
    KEYS = {"name": text}  # a check per constructor argument (ganqp_cli.keyspec)
    # The critic score that separates "real" from "fake" when the losses fix one (0 for
    # logits); None when they depend on score differences only (WGAN, GAN-QP), where the
    # fakes' mean score is the reference (ADA's overfitting heuristic uses it).
    score_threshold: float | None = None
    # True when the critic loss differentiates the critic twice (a gradient penalty's
    # double backward): train.compile then leaves the critic uncompiled.
    differentiates_critic_twice = False

    def __init__(self, name: str) -> None:
        self.name = name

    # -- networks -------------------------------------------------------------------------
    def build(self, arch, shape: tuple[int, ...]) -> Models:
        return Models(G=arch.generator(shape), D=arch.critic(shape))

    def critic_modules(self, m: Models) -> list[nn.Module]:
        return [m.D]

    def generator_modules(self, m: Models) -> list[nn.Module]:
        return [m.G]

    # -- losses ---------------------------------------------------------------------------
    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def generator_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def after_critic_step(self, m: Models) -> None:
        """Called after each critic optimiser step (e.g. WGAN's weight clipping)."""

    # -- the critic's score, for regularisers and augmentation control --------------------
    scores_need_other = False  # True when a score needs a batch of the other side

    def fake_batch(self, m: Models, z: torch.Tensor) -> torch.Tensor:
        """The fake samples the critic judges for codes z."""
        return m.G(z)

    def critic_score(self, m: Models, x: torch.Tensor, z: torch.Tensor | None = None,
                     other: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's scalar score per sample of the batch `x`, higher meaning "real", as
        the losses see it. For a fake batch, `z` holds its codes (a joint critic scores
        (x, z)); `other` is a batch of the other side, which pair critics score against
        (needed when `scores_need_other`). Differentiable in `x` and the critic."""
        return full(m.D(x)).flatten()

    # -- encoders -------------------------------------------------------------------------
    def encode(self, m: Models, x: torch.Tensor) -> torch.Tensor:
        raise UserError(f"objective={self.name} has no encoder: reconstruction needs a "
                        "checkpoint of an encoder model (objective=bigan-qp or objective=o-gan).")


def per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)
