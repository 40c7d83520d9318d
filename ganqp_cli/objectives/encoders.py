"""Objectives whose models also encode images: BiGAN-QP and O-GAN.

BiGAN-QP (Su, 2018): a separate encoder E trained with the generator against a joint
critic T(x, z), plus two stop-gradient guide terms. O-GAN (Su, 2019, arXiv 1903.01931): the
critic *is* the encoder; its score is the mean of E's z_dim outputs and a Pearson correlation
term rho(z, E(G(z))) makes the outputs a code of the image, at almost no extra cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import POSITIVE, number, one_of, whole
from ganqp_cli.networks import JointCritic, spectral_normalise
from ganqp_cli.objectives.base import Models, Objective, Stats
from ganqp_cli.objectives.losses import (
    critic_hinge,
    critic_sgan,
    full,
    gen_hinge,
    gen_sgan_nonsaturating,
)
from ganqp_cli.objectives.qp import qp_critic_loss, qp_distance
from ganqp_cli.objectives.shared import share


def standardise(v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N(v): per-sample zero mean and unit (population) std over the code entries, so a
    standardised code has the scale of z ~ N(0, I)."""
    v = v.float()
    v = v - v.mean(1, keepdim=True)
    return v / v.std(1, unbiased=False, keepdim=True).clamp_min(eps)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample Pearson correlation over entries: cos(N(a), N(b)) = mean(N(a) * N(b))."""
    return (standardise(a) * standardise(b)).mean(1)


class BiGANQP(Objective):
    """BiGAN with the QP divergence on (image, code) pairs.

    Critic T maximises E[dT - dT^2 / (2 lambda d)], dT = T(x, E(x)) - T(G(z), z), with the
    joint distance d = mean|x - G(z)| + mean|E(x) - z| per sample (`distance=l1`, or root
    mean squares with `l2`). G and E minimise E[dT] + beta1 ||z - E(G_ng(z))||^2 +
    beta2 ||x - G(E_ng(x))||^2 (mean squares; _ng: no gradient, so the first guide term
    trains E only and the second G only). beta1/beta2 null: the reference's values by
    resolution `res` (the run's, which the YAML passes), 2/3 up to 128 px and 4/6 above.
    """

    has_encoder = True
    default_temperature = 1.0
    KEYS = {"lam": POSITIVE, "distance": one_of("l1", "l2"),
            "beta1": number(0, allow_none=True), "beta2": number(0, allow_none=True),
            "hidden": whole(1), "res": whole(0)}

    def __init__(self, name: str = "bigan-qp", lam: float = 10.0, distance: str = "l1",
                 beta1: float | None = None, beta2: float | None = None,
                 hidden: int = 1024, res: int = 0) -> None:
        super().__init__(name)
        if distance not in ("l1", "l2"):
            raise UserError(f"objective.distance={distance!r}; valid: l1, l2.")
        for key, v in (("beta1", beta1), ("beta2", beta2)):
            if v is not None and not (isinstance(v, int | float) and v >= 0):
                raise UserError(f"objective.{key}={v!r} is not valid: a weight >= 0, or null "
                                "for the reference value by resolution.")
        self.lam, self.distance, self.hidden = lam, distance, hidden
        self.beta_cfg = (beta1, beta2)
        self.beta1, self.beta2 = self.betas_for(res)

    def betas_for(self, res: int) -> tuple[float, float]:
        (b1, b2), (r1, r2) = self.beta_cfg, ((2.0, 3.0) if res <= 128 else (4.0, 6.0))
        return float(r1 if b1 is None else b1), float(r2 if b2 is None else b2)

    def build(self, arch, shape: tuple[int, ...]) -> Models:
        G = arch.generator(shape)
        E = arch.encoder(shape, G.z_dim)
        T = JointCritic(arch.critic(shape, out_dim=G.z_dim), G.z_dim, G.z_dim, self.hidden)
        return Models(G=G, D=spectral_normalise(T) if arch.sn else T, E=E)

    def critic_modules(self, m: Models) -> list[nn.Module]:
        return [m.D]

    def generator_modules(self, m: Models) -> list[nn.Module]:
        return [m.G, m.E]

    def _delta(self, m: Models, real: torch.Tensor, z: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fake, z_real = m.G(z), m.E(real)
        t_r, t_f = m.D(real, z_real).float().flatten(), m.D(fake, z).float().flatten()
        # In the critic step E is frozen, so these are critic_score's T(x, E(x)), T(G(z), z).
        share(fake=fake, real_score=t_r, fake_score=t_f)
        return t_r - t_f, fake, z_real  # fp32 before subtracting

    def critic_score(self, m: Models, x: torch.Tensor, z: torch.Tensor | None = None,
                     other: torch.Tensor | None = None) -> torch.Tensor:
        """T(x, z) for fakes with codes z; T(x, E(x)) for reals, the code detached so that a
        gradient in x is the critic's alone."""
        code = m.E(x).detach() if z is None else z
        return full(m.D(x, code)).flatten()

    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        dT, fake, z_real = self._delta(m, real, z)
        d = qp_distance(real, fake, self.distance) + qp_distance(z_real, z, self.distance)
        loss = qp_critic_loss(dT, d, self.lam).mean()
        return loss, {"dT": dT.mean(), "dist": d.mean()}

    def generator_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        dT, fake, z_real = self._delta(m, real, z)
        guide_z = (z - m.E(fake.detach()).float()).square().mean()
        guide_x = (real - m.G(z_real.detach()).float()).square().mean()
        loss = dT.mean() + self.beta1 * guide_z + self.beta2 * guide_x
        return loss, {"dT": dT.mean(), "guide_z": guide_z, "guide_x": guide_x}

    def encode(self, m: Models, x: torch.Tensor) -> torch.Tensor:
        return m.E(x).float()


@dataclass(frozen=True)
class Base:
    """What O-GAN's correlation term is added to: critic and generator losses of the score
    T = avg E(x) on reals (r) and fakes (f); `critic` also gets the images (GAN-QP's
    quadratic term needs their distance)."""

    critic: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float],
                     torch.Tensor]
    generator: Callable[[torch.Tensor], torch.Tensor]


def _qp_critic(r: torch.Tensor, f: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
               qp_weight: float) -> torch.Tensor:
    # -dT + qp_weight dT^2 / mean (x_r - G(z))^2: qp_critic_loss divides by 2 lambda d, so
    # lambda = 1 / (2 qp_weight).
    mse = qp_distance(real, fake, "l2").square()
    return qp_critic_loss(r - f, mse, 1.0 / (2.0 * qp_weight)).mean()


BASES: dict[str, Base] = {
    # the generator's E[T(x_r) - T(G(z))] less the term without a gradient for G
    "gan-qp": Base(_qp_critic, lambda f: -f.mean()),
    "sgan": Base(lambda r, f, *_: critic_sgan(r, f), gen_sgan_nonsaturating),
    "hinge": Base(lambda r, f, *_: critic_hinge(r, f), gen_hinge),
}


class OGAN(Objective):
    """O-GAN: the critic D = E has z_dim outputs, its score is T(x) = avg E(x), and both
    players add -lambda * rho(z, E(G(z))) to the losses of a base objective on T (BASES):

    `base=gan-qp` (the reference's variant): critic -dT + qp_weight * dT^2 / mean (x_r -
    G(z))^2 with dT = T(x_r) - T(G(z)) per sample, generator -T(G(z)); `base=sgan`: binary
    cross-entropy critic, non-saturating generator; `base=hinge`: hinge losses. (The
    reference pushes real scores down, T -> -T here; rho is blind to the score because N
    removes the mean.) lam null: the reference's value by resolution `res` (the run's), 0.5
    up to 128 px and 1.0 above. Codes are N(E(x)); reconstructions G(temperature * N(E(x))).
    """

    has_encoder = True
    default_temperature = 0.9
    KEYS = {"base": one_of(*BASES), "lam": number(0, allow_none=True), "qp_weight": POSITIVE,
            "res": whole(0)}

    def __init__(self, name: str = "o-gan", base: str = "gan-qp", lam: float | None = None,
                 qp_weight: float = 0.25, res: int = 0) -> None:
        super().__init__(name)
        if base not in BASES:
            raise UserError(f"objective.base={base!r} is not valid: {', '.join(BASES)}.")
        if lam is not None and not (isinstance(lam, int | float) and lam >= 0):
            raise UserError(f"objective.lam={lam!r} is not valid: a weight >= 0, or null for "
                            "the reference value by resolution.")
        self.base, self.lam_cfg, self.qp_weight = base, lam, qp_weight
        self.lam = self.lam_for(res)
        self.score_threshold = None if base == "gan-qp" else 0.0  # sgan/hinge: logits

    def lam_for(self, res: int) -> float:
        if self.lam_cfg is not None:
            return float(self.lam_cfg)
        return 0.5 if res <= 128 else 1.0

    def build(self, arch, shape: tuple[int, ...]) -> Models:
        G = arch.generator(shape)
        E = arch.encoder(shape, G.z_dim)
        return Models(G=G, D=E, E=E)

    def critic_score(self, m: Models, x: torch.Tensor, z: torch.Tensor | None = None,
                     other: torch.Tensor | None = None) -> torch.Tensor:
        return full(m.D(x)).mean(1)  # T(x) = avg E(x)

    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        fake = m.G(z)
        e_fake = m.D(fake).float()
        r, f = m.D(real).float().mean(1), e_fake.mean(1)
        share(fake=fake, real_score=r, fake_score=f)
        adv = BASES[self.base].critic(r, f, real, fake, self.qp_weight)
        rho = pearson(z, e_fake).mean()
        return adv - self.lam * rho, {"adv": adv, "rho": rho, "dT": (r - f).mean()}

    def generator_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        e_fake = m.D(m.G(z)).float()
        adv = BASES[self.base].generator(e_fake.mean(1))
        rho = pearson(z, e_fake).mean()
        return adv - self.lam * rho, {"adv": adv, "rho": rho}

    def encode(self, m: Models, x: torch.Tensor) -> torch.Tensor:
        return standardise(m.D(x))
