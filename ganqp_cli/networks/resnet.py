"""SNGAN/BigGAN-style residual networks (`arch=resnet`).

Generator: Linear(z -> 4x4 x C0), up-sampling residual blocks (BN-ReLU-up-conv3-BN-ReLU-conv3,
shortcut up-conv1), BN-ReLU-conv3-tanh. Critic: a first block conv3-ReLU-conv3-pool (shortcut
pool-conv1), residual blocks (ReLU-conv3-ReLU-conv3[-pool], the first conv keeping the input's
channels, shortcut conv1[-pool] when the channels change or it down-samples), ReLU, sum over
positions, Linear. Xavier-uniform
initialisation, gain sqrt(2) in the residual branches and 1 elsewhere, zero biases, as the
SNGAN code. Channels are multiples of `ch` (64) per resolution:

- 16, 32 px: SNGAN's CIFAR-10 networks (G 4 ch = 256 wide, D 2 ch = 128 wide, two of its
  four blocks down-sample); 16 px has one up-block fewer.
- 64 px: SNGAN 64 px (G 1024 -> 64, D 64 -> 1024, five down-sampling blocks).
- 128 px: SNGAN's ImageNet networks, identical to BigGAN's 128 px tables at ch 64.
- 256, 512 px: BigGAN's 256 and 512 px channel tables at ch 64.

`width` multiplies every channel count; `d_norm: bn` puts BatchNorm before each critic ReLU.
Class-conditional (cond=true): conditional BatchNorm in the generator's blocks (the last
BatchNorm stays plain, as SNGAN's), a projection critic (networks.conditional).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import POSITIVE, flag, one_of, text, whole
from ganqp_cli.networks.common import (
    EncoderFromCritic,
    Generator,
    Shape,
    _ch,
    _levels,
    _maybe_sn,
)
from ganqp_cli.networks.conditional import CondBatchNorm2d, projection_critic

# res -> (generator channels from the 4x4 input to the last block, critic block outputs,
# which critic blocks halve the resolution), in multiples of `ch`.
TABLES: dict[int, tuple[list[int], list[int], list[bool]]] = {
    16: ([4, 4, 4], [2, 2, 2, 2], [True, True, False, False]),
    32: ([4, 4, 4, 4], [2, 2, 2, 2], [True, True, False, False]),
    64: ([16, 8, 4, 2, 1], [1, 2, 4, 8, 16], [True] * 5),
    128: ([16, 16, 8, 4, 2, 1], [1, 2, 4, 8, 16, 16], [True] * 5 + [False]),
    256: ([16, 16, 8, 8, 4, 2, 1], [1, 2, 4, 8, 8, 16, 16], [True] * 6 + [False]),
    512: ([16, 16, 8, 8, 4, 2, 1, 1], [1, 1, 2, 4, 8, 8, 16, 16], [True] * 7 + [False]),
}
GAIN = math.sqrt(2.0)


def _conv(c_in: int, c_out: int, k: int, gain: float, bias: bool = True) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, k, 1, k // 2, bias=bias)
    with torch.no_grad():
        nn.init.xavier_uniform_(conv.weight, gain)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return conv


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        nn.init.xavier_uniform_(lin.weight)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
    return lin


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _gen_norm(ch: int, n_classes: int) -> nn.Module:
    return CondBatchNorm2d(ch, n_classes) if n_classes else nn.BatchNorm2d(ch)


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, n_classes: int = 0) -> None:
        super().__init__()
        self.bn1, self.bn2 = _gen_norm(c_in, n_classes), _gen_norm(c_out, n_classes)
        self.conv1, self.conv2 = _conv(c_in, c_out, 3, GAIN), _conv(c_out, c_out, 3, GAIN)
        self.shortcut = _conv(c_in, c_out, 1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_up(F.relu(self.bn1(x))))
        h = self.conv2(F.relu(self.bn2(h)))
        return h + self.shortcut(_up(x))


class DownBlock(nn.Module):
    """A critic block; `first` is SNGAN's optimised first block (no activation on the input
    image, pooling before the shortcut's conv)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool, norm: str,
                 bias: bool = True) -> None:
        super().__init__()
        self.down, self.first = down, first
        hidden = c_out if first else c_in  # SNGAN's blocks widen in their second conv
        self.conv1 = _conv(c_in, hidden, 3, GAIN, bias)
        self.conv2 = _conv(hidden, c_out, 3, GAIN, bias)
        self.norm1 = nn.Identity() if first else _norm(norm, c_in)
        self.norm2 = _norm(norm, hidden)
        learned = first or down or c_in != c_out
        self.shortcut = _conv(c_in, c_out, 1, 1.0, bias) if learned else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.norm1(x))
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            s = self.shortcut(F.avg_pool2d(s, 2))
        else:
            s = s if self.shortcut is None else self.shortcut(s)
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"arch.d_norm={kind!r} is not a critic normalisation; valid: bn, none.")


class SumPool(nn.Module):
    """ReLU, then the sum over positions (SNGAN's global sum pooling)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(x)).sum((2, 3))


class GenBody(nn.Module):
    def __init__(self, z_dim: int, chans: list[int], out_ch: int, n_classes: int = 0) -> None:
        super().__init__()
        self.top = chans[0]
        self.fc = _linear(z_dim, 16 * chans[0])
        self.blocks = nn.Sequential(*[UpBlock(a, b, n_classes)
                                      for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.bn = nn.BatchNorm2d(chans[-1])
        self.out = _conv(chans[-1], out_ch, 3, 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.fc(z).view(z.shape[0], self.top, 4, 4))
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetArch(EncoderFromCritic):
    """Residual generator and critic; see the module docstring for the channel tables."""

    KEYS = {"name": text, "z_dim": whole(1), "ch": whole(1), "width": POSITIVE, "sn": flag,
            "d_norm": one_of("bn", "none")}
    RESOLUTIONS = tuple(TABLES)

    def __init__(self, name: str = "resnet", z_dim: int = 128, ch: int = 64,
                 width: float = 1.0, sn: bool = False, d_norm: str = "none") -> None:
        self.name, self.z_dim, self.ch, self.width = name, z_dim, ch, width
        self.sn, self.d_norm = sn, d_norm

    def _table(self, shape: Shape) -> tuple[list[int], list[int], list[bool]]:
        res = 2 ** _levels(shape)
        if res not in TABLES:
            raise UserError(f"res={res}: arch=resnet has networks for "
                            f"{', '.join(map(str, TABLES))} px.")
        g, d, downs = TABLES[res]
        scale = lambda m: _ch(m * self.ch, self.width)  # noqa: E731
        return [scale(m) for m in g], [scale(m) for m in d], downs

    def generator(self, shape: Shape) -> Generator:
        g, _, _ = self._table(shape)
        return Generator(self.z_dim, GenBody(self.z_dim, g, shape[0]))

    def trunk(self, shape: Shape, bias: bool = True) -> tuple[nn.Sequential, int]:
        """The critic's blocks, ReLU and sum pooling; returns it and its feature count."""
        _, d, downs = self._table(shape)
        blocks: list[nn.Module] = []
        c_in = shape[0]
        for i, (c_out, down) in enumerate(zip(d, downs, strict=True)):
            blocks.append(DownBlock(c_in, c_out, down, i == 0, self.d_norm, bias))
            c_in = c_out
        blocks.append(SumPool(_norm(self.d_norm, c_in)))
        return nn.Sequential(*blocks), c_in

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool = True) -> nn.Module:
        body, feats = self.trunk(shape, bias=bias)
        body.append(_linear(feats, out_dim, bias))
        return _maybe_sn(body, self.sn)

    # class-conditional networks (cond=true): conditional BatchNorm, projection critic
    def conditional_generator(self, shape: Shape, n_classes: int) -> Generator:
        g, _, _ = self._table(shape)
        return Generator(self.z_dim, GenBody(self.z_dim, g, shape[0], n_classes))

    def conditional_critic(self, shape: Shape, n_classes: int, out_dim: int = 1,
                           bias: bool = True) -> nn.Module:
        return projection_critic(self, shape, n_classes, out_dim, bias)
