"""GAN-QP: the quadratic-potential divergence (Su, 2018, arXiv 1811.07296)."""

from __future__ import annotations

import torch

from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import POSITIVE, one_of, whole
from ganqp_cli.networks import PairCritic, spectral_normalise
from ganqp_cli.objectives.base import Models, Objective, Stats, per_sample_mean
from ganqp_cli.objectives.losses import full
from ganqp_cli.objectives.shared import share


def qp_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample distance: `l1` mean |a - b|, `l2` root mean (a - b)^2 over all but dim 0."""
    diff = full(a) - full(b)  # in float32 even when both are half precision (autocast)
    if kind == "l1":
        return per_sample_mean(diff.abs())
    if kind == "l2":
        return per_sample_mean(diff.square()).sqrt()
    raise ValueError(f"objective.distance must be l1 or l2, got {kind!r}")


def qp_critic_loss(dT: torch.Tensor, d: torch.Tensor, lam: float) -> torch.Tensor:
    """Negated QP critic objective, per sample: -dT + dT^2 / (2 lambda d)."""
    return -dT + dT.square() / (2 * lam * d.clamp_min(1e-8))


class GANQP(Objective):
    """Critic maximises E[dT - dT^2 / (2 lambda d(x_r, x_f))]; the generator minimises E[dT].

    `critic=unary`: T(x_r, x_f) = T(x_r), so dT = T(x_r) - T(x_f) (the paper's experiments;
    real and fake pass the critic separately, with separate BatchNorm statistics).
    `critic=pair`: T(x_r, x_f) = MLP([E(x_r); E(x_f)]), dT = T(x_r, x_f) - T(x_f, x_r).
    Real and fake are paired by index. The distance is never part of the generator loss.
    """

    KEYS = {"lam": POSITIVE, "distance": one_of("l1", "l2"), "critic": one_of("unary", "pair"),
            "pair_hidden": whole(1)}

    def __init__(self, name: str = "gan-qp", lam: float = 10.0, distance: str = "l1",
                 critic: str = "unary", pair_hidden: int = 512) -> None:
        super().__init__(name)
        if distance not in ("l1", "l2"):
            raise UserError(f"objective.distance={distance!r}; valid: l1, l2.")
        if critic not in ("unary", "pair"):
            raise UserError(f"objective.critic={critic!r}; valid: unary, pair.")
        self.lam, self.distance, self.critic, self.pair_hidden = lam, distance, critic, pair_hidden
        # A pair critic's score dT(x, other) is antisymmetric: 0 is its decision boundary.
        self.scores_need_other = critic == "pair"
        self.score_threshold = 0.0 if critic == "pair" else None

    def build(self, arch, shape: tuple[int, ...]) -> Models:
        if self.critic == "unary":
            return super().build(arch, shape)
        trunk, feats = arch.trunk(shape)
        D = PairCritic(trunk, feats, self.pair_hidden)
        return Models(G=arch.generator(shape), D=spectral_normalise(D) if arch.sn else D)

    def delta(self, m: Models, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.scores(m, real, fake)[0]

    def scores(self, m: Models, real: torch.Tensor, fake: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dT, the critic's score on the real batch, on the fake batch), the scores as
        `critic_score` gives them."""
        if self.critic == "pair":
            t_rf, t_fr = m.D.both(real, fake)
            dT = (full(t_rf) - full(t_fr)).flatten()
            return dT, dT, -dT
        # Each output in float32 before subtracting: under autocast dT is a small difference
        # of two half-precision numbers, and the quadratic term squares its rounding error.
        t_r, t_f = full(m.D(real)).flatten(), full(m.D(fake)).flatten()
        return t_r - t_f, t_r, t_f

    def critic_score(self, m: Models, x: torch.Tensor, z: torch.Tensor | None = None,
                     other: torch.Tensor | None = None) -> torch.Tensor:
        """Unary: T(x). Pair: dT(x, other) = T(x, other) - T(other, x), `other` detached."""
        if self.critic == "pair":
            if other is None:
                raise ValueError("a pair critic scores a batch against a batch of the other side")
            return self.delta(m, x, other.detach())
        return super().critic_score(m, x)

    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        fake = m.G(z)
        dT, t_r, t_f = self.scores(m, real, fake)
        share(fake=fake, real_score=t_r, fake_score=t_f)
        d = qp_distance(real, fake, self.distance)
        loss = qp_critic_loss(dT, d, self.lam).mean()
        return loss, {"dT": dT.mean(), "dist": d.mean(),
                      "lip": (dT.abs() / (self.lam * d.clamp_min(1e-8))).mean()}

    def generator_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        """E[dT] for the pair critic; -E[T(x_f)] for the unary one: E[dT] less E[T(x_r)],
        which has no gradient for G, so the critic does not run on the real batch."""
        if self.critic == "pair":
            return self.delta(m, real, m.G(z)).mean(), {}
        return -full(m.D(m.G(z))).mean(), {}
