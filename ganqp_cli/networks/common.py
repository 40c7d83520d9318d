"""Building blocks shared by the architectures: channel scaling, spectral norm, critic
normalisation, resolution checks, the Generator wrapper and the initialisations."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganqp_cli import spectral
from ganqp_cli.errors import UserError

Shape = tuple[int, ...]
IMAGE_SIDES = (16, 32, 64, 128, 256, 512, 1024)


def _ch(c: float, width: float) -> int:
    return max(1, int(round(c * width)))


def spectral_normalise(m: nn.Module) -> nn.Module:
    """Spectral norm on every conv and linear layer of `m` (after initialisation, so the
    power iteration starts from the final weights), its power iteration in float32 under
    autocast (ganqp_cli.spectral)."""
    return spectral.spectral_normalise(m, (nn.Conv2d, nn.Linear))


def _maybe_sn(m: nn.Module, on: bool) -> nn.Module:
    return spectral_normalise(m) if on else m


def _norm2d(kind: str, ch: int, momentum: float, eps: float) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(ch, momentum=momentum, eps=eps)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"arch.d_norm={kind!r} is not a critic normalisation; valid: bn, none.")


def _levels(shape: Shape, lo: int = 16, hi: int = 1024) -> int:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise UserError(f"this arch needs square images, got data of shape {tuple(shape)}; "
                        "use arch=mlp for point data.")
    res = shape[1]
    if res < lo or res > hi or res & (res - 1):
        raise UserError(f"res={res} is not a power of two from {lo} to {hi}.")
    return int(math.log2(res))


class EncoderFromCritic:
    """The encoder every arch builds for BiGAN-QP and O-GAN: its critic with `out_dim`
    outputs and biases (an encoder's outputs are codes, not scores with a free offset)."""

    def encoder(self, shape: Shape, out_dim: int) -> nn.Module:
        return self.critic(shape, out_dim=out_dim, bias=True)  # type: ignore[attr-defined]


class Generator(nn.Module):
    """z -> image; `body` ends in tanh. Stores z_dim so samplers need no config."""

    def __init__(self, z_dim: int, body: nn.Module) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.body = body

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class Reshape(nn.Module):
    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


def image_modules(critic: nn.Module) -> list[nn.Module]:
    """The sub-modules of a critic whose first argument is an image batch (what an
    augmentation wraps): the critic itself, unless it names them (`image_modules()`), as the
    pair and joint critics do (their image branch runs once per image argument)."""
    own = getattr(critic, "image_modules", None)
    return list(own()) if callable(own) else [critic]


def _weights(m: nn.Module) -> list[tuple[nn.Module, torch.Tensor]]:
    return [(layer, layer.weight) for layer in m.modules()
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)]


@torch.no_grad()
def _glorot(m: nn.Module) -> nn.Module:
    """Keras' default initialisation (Glorot uniform, zero bias), as the reference code."""
    for layer, w in _weights(m):
        nn.init.xavier_uniform_(w)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return m


@torch.no_grad()
def _dcgan_init(m: nn.Module) -> nn.Module:
    for layer, w in _weights(m):
        nn.init.normal_(w, 0.0, 0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    for layer in m.modules():
        if isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return m
