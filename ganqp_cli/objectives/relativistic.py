"""RpGAN: the relativistic pairing GAN (Jolicoeur-Martineau 2019), R3GAN's loss (Huang et al.
2024) when `reg.r1` and `reg.r2` are added to it.

Real and fake are paired by index, as in GAN-QP: with dT_i = T(x_r_i) - T(x_f_i), the critic
minimises E_i[softplus(-dT_i)] and the generator E_i[softplus(dT_i)]. Each pair enters the
softplus on its own; a loss of batch means (softplus(-(E T(x_r) - E T(x_f)))) would be another
objective (tests/test_pairing.py tells them apart).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganqp_cli.objectives.base import Models, Objective, Stats
from ganqp_cli.objectives.losses import full


def critic_rp(dT: torch.Tensor) -> torch.Tensor:
    """The critic's loss per pair: softplus(-dT) = -log sigmoid(T(x_r) - T(x_f))."""
    return F.softplus(-dT)


def gen_rp(dT: torch.Tensor) -> torch.Tensor:
    """The generator's loss per pair: softplus(dT) = -log sigmoid(T(x_f) - T(x_r))."""
    return F.softplus(dT)


class RpGAN(Objective):
    """Relativistic pairing loss on a unary critic T(x) (real and fake pass it separately).

    Without R1 and R2 its critic can grow without bound on separable data; the YAML sets
    both (`objective.reg`), as R3GAN does. Its scores only matter through differences, so
    there is no fixed real/fake threshold (ADA uses the fakes' mean score)."""

    score_threshold = None

    def __init__(self, name: str = "rpgan") -> None:
        super().__init__(name)

    def delta(self, m: Models, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        # Each output in float32 before subtracting (autocast), as GAN-QP's dT.
        return (full(m.D(real)) - full(m.D(fake))).flatten()

    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        dT = self.delta(m, real, m.G(z))
        return critic_rp(dT).mean(), {"dT": dT.mean().detach()}

    def generator_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        dT = self.delta(m, real, m.G(z))
        return gen_rp(dT).mean(), {"dT": dT.mean().detach()}
