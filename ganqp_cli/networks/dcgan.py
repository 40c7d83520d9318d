"""The DCGAN-type architectures: the GAN-QP reference variant and Radford et al.'s DCGAN."""

from __future__ import annotations

import math

from torch import nn

from ganqp_cli.keyspec import POSITIVE, flag, one_of, text, whole
from ganqp_cli.networks.common import (
    IMAGE_SIDES,
    EncoderFromCritic,
    Generator,
    Reshape,
    Shape,
    _ch,
    _dcgan_init,
    _glorot,
    _levels,
    _maybe_sn,
    _norm2d,
)
from ganqp_cli.networks.conditional import concat_generator, projection_critic


class QPArch(EncoderFromCritic):
    """The GAN-QP reference DCGAN variant (5x5 kernels, stride 2, BN on the dense units).

    num_layers = log2(res) - 3, max_ch = min(8 * res, 2048) (1024 at 128, 2048 at 256 and
    512), D channels max_ch / 2^(num_layers - i), G channels max_ch / 2^(i + 1). BN
    momentum/eps follow Keras' defaults (0.99 -> 0.01, 1e-3) as in the reference code.
    """

    KEYS = {"name": text, "z_dim": whole(1), "width": POSITIVE, "sn": flag,
            "d_norm": one_of("bn", "none")}
    RESOLUTIONS = IMAGE_SIDES

    def __init__(self, name: str = "gan-qp", z_dim: int = 128, width: float = 1.0,
                 sn: bool = False, d_norm: str = "bn") -> None:
        self.name, self.z_dim, self.width, self.sn, self.d_norm = name, z_dim, width, sn, d_norm
        self.bn = dict(momentum=0.01, eps=1e-3)

    def _sizes(self, shape: Shape) -> tuple[int, int]:
        res = 2 ** _levels(shape)
        return int(math.log2(res)) - 3, min(8 * res, 2048)

    def generator(self, shape: Shape, extra: int = 0) -> Generator:
        """`extra`: inputs besides z (a class embedding, networks.conditional)."""
        n, max_ch = self._sizes(shape)
        top = _ch(max_ch, self.width)
        layers: list[nn.Module] = [
            nn.Linear(self.z_dim + extra, 16 * top), nn.BatchNorm1d(16 * top, **self.bn),
            nn.ReLU(True), Reshape(top, 4, 4)]
        c_in = top
        for i in range(n):
            c_out = _ch(max_ch / 2 ** (i + 1), self.width)
            layers += [nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1),
                       nn.BatchNorm2d(c_out, **self.bn), nn.ReLU(True)]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, shape[0], 5, 2, 2, output_padding=1), nn.Tanh()]
        return _glorot(Generator(self.z_dim, nn.Sequential(*layers)))

    def trunk(self, shape: Shape, bias: bool = False) -> tuple[nn.Sequential, int]:
        """The critic's conv stack, flattened; returns it and its feature count."""
        n, max_ch = self._sizes(shape)
        layers: list[nn.Module] = []
        c_in = shape[0]
        for i in range(n + 1):
            c_out = _ch(max_ch / 2 ** (n - i), self.width)
            layers.append(nn.Conv2d(c_in, c_out, 5, 2, 2, bias=bias))
            if i > 0:
                layers.append(_norm2d(self.d_norm, c_out, **self.bn))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c_out
        layers.append(nn.Flatten())
        return nn.Sequential(*layers), c_in * 16

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool = False) -> nn.Module:
        body, feats = self.trunk(shape, bias=bias)
        body.append(nn.Linear(feats, out_dim, bias=bias))
        return _maybe_sn(_glorot(body), self.sn)

    # class-conditional networks (cond=true): z + class embedding, projection critic
    conditional_generator = concat_generator

    def conditional_critic(self, shape: Shape, n_classes: int, out_dim: int = 1,
                           bias: bool = False) -> nn.Module:
        return projection_critic(self, shape, n_classes, out_dim, bias, init=_glorot)


class DCGANArch(EncoderFromCritic):
    """Radford et al.'s DCGAN as in the PyTorch examples (4x4 kernels, ngf = ndf = 64,
    z_dim 100, N(0, 0.02) init) at 64 px; other resolutions add or remove stride-2 blocks.
    Channels double per block up to 16 * ngf."""

    KEYS = {**QPArch.KEYS, "ngf": whole(1), "ndf": whole(1)}
    RESOLUTIONS = IMAGE_SIDES

    def __init__(self, name: str = "dcgan", z_dim: int = 100, ngf: int = 64, ndf: int = 64,
                 width: float = 1.0, sn: bool = False, d_norm: str = "bn") -> None:
        self.name, self.z_dim, self.sn, self.d_norm = name, z_dim, sn, d_norm
        self.ngf, self.ndf = _ch(ngf, width), _ch(ndf, width)

    def generator(self, shape: Shape, extra: int = 0) -> Generator:
        """`extra`: inputs besides z (a class embedding, networks.conditional)."""
        blocks = _levels(shape) - 3  # stride-2 blocks between 4x4 and res/2
        mult = [min(2 ** (blocks - i), 16) for i in range(blocks + 1)]
        layers: list[nn.Module] = [
            Reshape(self.z_dim + extra, 1, 1),
            nn.ConvTranspose2d(self.z_dim + extra, self.ngf * mult[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(self.ngf * mult[0]), nn.ReLU(True)]
        for i in range(blocks):
            c_in, c_out = self.ngf * mult[i], self.ngf * mult[i + 1]
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(self.ngf, shape[0], 4, 2, 1, bias=False), nn.Tanh()]
        return _dcgan_init(Generator(self.z_dim, nn.Sequential(*layers)))

    def _stack(self, shape: Shape, bias: bool = False) -> tuple[nn.Sequential, int]:
        """The critic's conv stack down to 4x4 and its channel count."""
        blocks = _levels(shape) - 3
        mult = [min(2 ** i, 16) for i in range(blocks + 1)]
        layers: list[nn.Module] = [
            nn.Conv2d(shape[0], self.ndf, 4, 2, 1, bias=bias),
            nn.LeakyReLU(0.2, True)]
        for i in range(blocks):
            c_in, c_out = self.ndf * mult[i], self.ndf * mult[i + 1]
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias),
                       _norm2d(self.d_norm, c_out, momentum=0.1, eps=1e-5),
                       nn.LeakyReLU(0.2, True)]
        return nn.Sequential(*layers), self.ndf * mult[-1]

    def trunk(self, shape: Shape, bias: bool = False) -> tuple[nn.Sequential, int]:
        """The critic's conv stack, flattened; returns it and its feature count."""
        body, ch = self._stack(shape, bias)
        body.append(nn.Flatten())
        return _dcgan_init(body), ch * 16

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool = False) -> nn.Module:
        body, feats = self._stack(shape, bias=bias)
        body.append(nn.Conv2d(feats, out_dim, 4, 1, 0, bias=bias))
        body.append(nn.Flatten())
        return _maybe_sn(_dcgan_init(body), self.sn)

    # class-conditional networks (cond=true): z + class embedding, projection critic
    conditional_generator = concat_generator

    def conditional_critic(self, shape: Shape, n_classes: int, out_dim: int = 1,
                           bias: bool = False) -> nn.Module:
        return projection_critic(self, shape, n_classes, out_dim, bias)
