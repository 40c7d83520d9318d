"""Critics with more than one input: GAN-QP's pair critic and BiGAN-QP's joint critic."""

from __future__ import annotations

import torch
from torch import nn

from ganqp_cli.networks.common import _glorot


class PairCritic(nn.Module):
    """Binary critic T(a, b) = MLP([trunk(a); trunk(b)]) (GAN-QP's general form)."""

    def __init__(self, trunk: nn.Module, feats: int, hidden: int = 512) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Sequential(nn.Linear(2 * feats, hidden), nn.LeakyReLU(0.2, True),
                                  nn.Linear(hidden, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.trunk(a), self.trunk(b)], 1))

    def image_modules(self) -> list[nn.Module]:
        return [self.trunk]  # called once per image, in forward and in both

    def both(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T(a, b), T(b, a)), each trunk evaluated once."""
        ea, eb = self.trunk(a), self.trunk(b)
        return self.head(torch.cat([ea, eb], 1)), self.head(torch.cat([eb, ea], 1))


class JointCritic(nn.Module):
    """T(x, z) = MLP([features(x); z]) on (image, code) pairs (BiGAN-QP's critic).

    `features` maps x to `feats` numbers (the reference: a bias-free conv stack ending in
    Linear(z_dim)); the head is Linear-LReLU-Linear-LReLU-Linear(1), bias-free as there."""

    def __init__(self, features: nn.Module, feats: int, z_dim: int, hidden: int = 1024) -> None:
        super().__init__()
        self.features = features
        self.head = _glorot(nn.Sequential(
            nn.Linear(feats + z_dim, hidden, bias=False), nn.LeakyReLU(0.2, True),
            nn.Linear(hidden, hidden, bias=False), nn.LeakyReLU(0.2, True),
            nn.Linear(hidden, 1, bias=False)))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.features(x), z], 1))

    def image_modules(self) -> list[nn.Module]:
        return [self.features]  # the image branch; the code z is not an image
