"""Generator, critic and encoder architectures. Networks hold no loss code.

An arch object (chosen by the `arch` config group) builds the networks for a data shape:
`(C, H, W)` images or `(D,)` points. Objectives ask it for what they need: a generator,
a critic with one output, an encoder (a critic trunk with `out_dim` outputs and biases).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganqp_cli.errors import UserError

Shape = tuple[int, ...]


def _ch(c: float, width: float) -> int:
    return max(1, int(round(c * width)))


def spectral_normalise(m: nn.Module) -> nn.Module:
    """Spectral norm on every conv and linear layer of `m` (after initialisation, so the
    power iteration starts from the final weights)."""
    for layer in list(m.modules()):
        if isinstance(layer, nn.Conv2d | nn.Linear) and not hasattr(layer, "parametrizations"):
            spectral_norm(layer)
    return m


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


class QPArch:
    """The GAN-QP reference DCGAN variant (5x5 kernels, stride 2, BN on the dense units).

    num_layers = log2(res) - 3, max_ch = min(8 * res, 2048) (1024 at 128, 2048 at 256 and
    512), D channels max_ch / 2^(num_layers - i), G channels max_ch / 2^(i + 1). BN
    momentum/eps follow Keras' defaults (0.99 -> 0.01, 1e-3) as in the reference code.
    """

    def __init__(self, name: str = "gan-qp", z_dim: int = 128, width: float = 1.0,
                 sn: bool = False, d_norm: str = "bn") -> None:
        self.name, self.z_dim, self.width, self.sn, self.d_norm = name, z_dim, width, sn, d_norm
        self.bn = dict(momentum=0.01, eps=1e-3)

    def _sizes(self, shape: Shape) -> tuple[int, int]:
        res = 2 ** _levels(shape)
        return int(math.log2(res)) - 3, min(8 * res, 2048)

    def generator(self, shape: Shape) -> Generator:
        n, max_ch = self._sizes(shape)
        top = _ch(max_ch, self.width)
        layers: list[nn.Module] = [
            nn.Linear(self.z_dim, 16 * top), nn.BatchNorm1d(16 * top, **self.bn), nn.ReLU(True),
            Reshape(top, 4, 4)]
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

    def encoder(self, shape: Shape, out_dim: int) -> nn.Module:
        return self.critic(shape, out_dim=out_dim, bias=True)


class DCGANArch:
    """Radford et al.'s DCGAN as in the PyTorch examples (4x4 kernels, ngf = ndf = 64,
    z_dim 100, N(0, 0.02) init) at 64 px; other resolutions add or remove stride-2 blocks.
    Channels double per block up to 16 * ngf."""

    def __init__(self, name: str = "dcgan", z_dim: int = 100, ngf: int = 64, ndf: int = 64,
                 width: float = 1.0, sn: bool = False, d_norm: str = "bn") -> None:
        self.name, self.z_dim, self.sn, self.d_norm = name, z_dim, sn, d_norm
        self.ngf, self.ndf = _ch(ngf, width), _ch(ndf, width)

    def generator(self, shape: Shape) -> Generator:
        blocks = _levels(shape) - 3  # stride-2 blocks between 4x4 and res/2
        mult = [min(2 ** (blocks - i), 16) for i in range(blocks + 1)]
        layers: list[nn.Module] = [
            Reshape(self.z_dim, 1, 1),
            nn.ConvTranspose2d(self.z_dim, self.ngf * mult[0], 4, 1, 0, bias=False),
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

    def encoder(self, shape: Shape, out_dim: int) -> nn.Module:
        return self.critic(shape, out_dim=out_dim, bias=True)


class MLPArch:
    """Fully connected networks for point data such as `data=ring8` (shape `(D,)`)."""

    def __init__(self, name: str = "mlp", z_dim: int = 2, hidden: int = 128, depth: int = 3,
                 width: float = 1.0, sn: bool = False, d_norm: str = "none") -> None:
        self.name, self.z_dim, self.depth, self.sn = name, z_dim, depth, sn
        self.hidden = _ch(hidden, width)
        if d_norm != "none":
            raise UserError(f"arch.d_norm={d_norm!r}: arch=mlp has no critic normalisation; "
                            "valid: none.")

    def _mlp(self, d_in: int, d_out: int, act: nn.Module, bias: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(self.depth):
            layers += [nn.Linear(d_in if i == 0 else self.hidden, self.hidden, bias=bias),
                       act]
        layers.append(nn.Linear(self.hidden, d_out, bias=bias))
        return nn.Sequential(*layers)

    def generator(self, shape: Shape) -> Generator:
        if len(shape) != 1:
            raise UserError(f"arch=mlp is for point data; got images of shape {tuple(shape)}. "
                            "Use arch=gan-qp or arch=dcgan.")
        return Generator(self.z_dim, self._mlp(self.z_dim, shape[0], nn.ReLU(True)))

    def trunk(self, shape: Shape, bias: bool = True) -> tuple[nn.Sequential, int]:
        body = self._mlp(shape[0], self.hidden, nn.LeakyReLU(0.2, True), bias)[:-1]
        return body, self.hidden

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool = True) -> nn.Module:
        if len(shape) != 1:
            raise UserError(f"arch=mlp is for point data; got images of shape {tuple(shape)}.")
        return _maybe_sn(self._mlp(shape[0], out_dim, nn.LeakyReLU(0.2, True), bias), self.sn)

    def encoder(self, shape: Shape, out_dim: int) -> nn.Module:
        return self.critic(shape, out_dim=out_dim, bias=True)


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


class PairCritic(nn.Module):
    """Binary critic T(a, b) = MLP([trunk(a); trunk(b)]) (GAN-QP's general form)."""

    def __init__(self, trunk: nn.Module, feats: int, hidden: int = 512) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Sequential(nn.Linear(2 * feats, hidden), nn.LeakyReLU(0.2, True),
                                  nn.Linear(hidden, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.trunk(a), self.trunk(b)], 1))

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
