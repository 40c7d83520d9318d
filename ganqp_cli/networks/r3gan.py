"""R3GAN's networks (`arch=r3gan`; Huang et al. 2024, "The GAN is dead; long live the GAN!").

A stage per resolution from 4 px to `res`, each with `blocks` residual blocks of inverted
bottleneck form: 1x1 conv expanding the channels `expansion` times, bias + LeakyReLU(0.2), a
grouped 3x3 conv (`cardinality` groups), bias + LeakyReLU(0.2), 1x1 conv back, added to the
input. No normalisation layer anywhere; convolutions carry no bias of their own (the biases
sit in the activations). Fix-up style initialisation: He-normal weights, the two first convs
of every block scaled by L^(-1/4) (L = blocks in the network) and the last one zero, so every
block starts as the identity and the network's variance does not grow with its depth.

Generator: a learned 4x4 basis (C x 4 x 4) scaled per channel by Linear(z); between stages a
1x1 conv where the channels change, then a 2x up-sampling with the [1, 2, 1] low-pass filter
(a 4-tap [1, 3, 3, 1] kernel, as interpolation); a 1x1 conv to the image channels (no tanh:
the output is linear, as R3GAN's). Critic: a 1x1 conv from the image, the stages in reverse
(down-sampling with the same filter, then a 1x1 conv where the channels change), a depthwise
4x4 conv at 4 px and a linear layer.

Channels per stage: `channels` (768) up to 32 px, halved for every stage above (FFHQ-256's
768-768-768-768-384-192-96), times `width`; or `widths`, one number per stage from 4 px (also
times `width`). `cardinality` null: 16 channels per group after the expansion, as every R3GAN
configuration at 768 channels and below (96 groups at 768).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganqp_cli import checks
from ganqp_cli.keyspec import POSITIVE, flag, one_of, text, whole
from ganqp_cli.networks.common import (
    IMAGE_SIDES,
    EncoderFromCritic,
    Generator,
    Shape,
    _levels,
    _maybe_sn,
)
from ganqp_cli.networks.conditional import (
    ConcatGenerator,
    Conditional,
    concat_generator,
    normalised,
)

LRELU_GAIN = math.sqrt(2 / (1 + 0.2 ** 2))  # keeps the variance through LeakyReLU(0.2)
GROUP_CHANNELS = 16  # channels per group when arch.cardinality is null


def _ints(low: int, allow_none: bool = False) -> Any:
    """A check for a whole number >= low, or a list of them (one per stage)."""
    def check(key: str, value: Any) -> Any:
        if value is None and allow_none:
            return value
        items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) \
            else [value]
        ok = bool(items) and all(checks.is_int(v) and v >= low for v in items)
        checks.require(ok, key, value, f"a whole number >= {low} or a list of them, one per "
                       "stage from 4 px up" + (", or null" if allow_none else ""))
        return value
    return check


@dataclass(frozen=True)
class Stage:
    side: int         # resolution of the stage in pixels
    channels: int
    blocks: int
    groups: int       # of the grouped 3x3 conv, over channels * expansion


def _msr(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """He-normal: N(0, gain^2 / fan_in); gain 0 gives zeros."""
    with torch.no_grad():
        fan_in = layer.weight[0].numel()
        if gain:
            layer.weight.normal_(0.0, gain / math.sqrt(fan_in))
        else:
            layer.weight.zero_()
    return layer


def _conv(c_in: int, c_out: int, k: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    return _msr(nn.Conv2d(c_in, c_out, k, 1, k // 2, groups=groups, bias=False), gain)


class BiasedLReLU(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), 0.2)


class Block(nn.Module):
    """x + conv1x1(act(grouped3x3(act(conv1x1(x))))), the expanding convs scaled by `gain`
    and the last one zero (`zero_last`; spectral norm cannot normalise a zero weight)."""

    def __init__(self, ch: int, expansion: int, groups: int, gain: float,
                 zero_last: bool = True) -> None:
        super().__init__()
        hidden = ch * expansion
        self.expand, self.act1 = _conv(ch, hidden, 1, gain=gain), BiasedLReLU(hidden)
        self.grouped = _conv(hidden, hidden, 3, groups, gain)
        self.act2 = BiasedLReLU(hidden)
        self.project = _conv(hidden, ch, 1, gain=0.0 if zero_last else gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.act2(self.grouped(self.act1(self.expand(x)))))


class Resample(nn.Module):
    """2x up- or down-sampling of every channel with the [1, 3, 3, 1] x [1, 3, 3, 1] / 64
    kernel ([1, 2, 1] convolved with the box [1, 1]): interpolation, not a learned layer."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        tap = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(tap, tap) / 64.0
        self.up = up
        # 4x the kernel when up-sampling: zero insertion keeps a quarter of the samples.
        self.register_buffer("kernel", kernel * (4.0 if up else 1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype).expand(c, 1, 4, 4)
        if self.up:
            return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)
        return F.conv2d(x, k, stride=2, padding=1, groups=c)


class GenerativeBasis(nn.Module):
    """A learned (C, 4, 4) basis, each channel scaled by Linear(z) (no bias)."""

    def __init__(self, z_dim: int, ch: int) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.randn(ch, 4, 4))
        self.linear = _msr(nn.Linear(z_dim, ch, bias=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.basis.unsqueeze(0) * self.linear(z)[:, :, None, None]


class Transition(nn.Sequential):
    """Between stages: a 1x1 conv where the channels change, before up-sampling (generator)
    or after down-sampling (critic), so the conv runs at the lower resolution."""

    def __init__(self, c_in: int, c_out: int, up: bool) -> None:
        conv = [_conv(c_in, c_out)] if c_in != c_out else []
        super().__init__(*(conv + [Resample(True)] if up else [Resample(False)] + conv))


class R3GANArch(EncoderFromCritic):
    """R3GAN's generator and critic; see the module docstring."""

    KEYS = {"name": text, "z_dim": whole(1), "channels": whole(1),
            "widths": _ints(1, allow_none=True), "width": POSITIVE, "blocks": _ints(1),
            "cardinality": _ints(1, allow_none=True), "expansion": whole(1), "sn": flag,
            "d_norm": one_of("none")}
    RESOLUTIONS = IMAGE_SIDES

    def __init__(self, name: str = "r3gan", z_dim: int = 64, channels: int = 768,
                 widths: list[int] | None = None, width: float = 1.0, blocks: Any = 2,
                 cardinality: Any = None, expansion: int = 2, sn: bool = False,
                 d_norm: str = "none") -> None:
        self.name, self.z_dim, self.channels, self.width = name, z_dim, channels, width
        self.widths = None if widths is None else list(widths)
        self.blocks, self.cardinality, self.expansion = blocks, cardinality, expansion
        self.sn = sn

    @classmethod
    def validate_res(cls, values: Mapping[str, Any], res: int) -> None:
        """Every stage's numbers at `res`, before any work (validate_arch calls it)."""
        args = {k: v for k, v in values.items() if k not in ("_target_", "sync_bn")}
        cls(**args).stages((3, res, res))

    def stages(self, shape: Shape) -> list[Stage]:
        """The stages from 4 px to the image side, with their channels, blocks and groups."""
        n = _levels(shape) - 1
        sides = [4 * 2 ** i for i in range(n)]
        base = self.widths if self.widths is not None else [
            self.channels * min(1.0, 32 / s) for s in sides]
        blocks, groups = self._per_stage("blocks", self.blocks, n), \
            self._per_stage("cardinality", self.cardinality, n)
        self._per_stage("widths", base, n)
        out = []
        for i, side in enumerate(sides):
            ch = max(1, int(round(base[i] * self.width)))
            hidden = ch * self.expansion
            g = groups[i] if groups[i] is not None else _default_groups(hidden)
            checks.require(hidden % g == 0, "arch.cardinality", self.cardinality,
                           f"the groups of each grouped conv must divide its channels; the "
                           f"{side} px stage has {ch} channels, {hidden} after the "
                           f"x{self.expansion} expansion, which {g} groups do not divide "
                           "(null: 16 channels per group)")
            out.append(Stage(side, ch, blocks[i], g))
        return out

    @staticmethod
    def _per_stage(key: str, value: Any, n: int) -> list[Any]:
        if isinstance(value, Sequence) and not isinstance(value, str):
            checks.require(len(value) == n, f"arch.{key}", list(value),
                           f"one number per stage from 4 px up: {n} at this resolution")
            return list(value)
        return [value] * n

    def _gain(self, stages: list[Stage]) -> float:
        return LRELU_GAIN * sum(s.blocks for s in stages) ** -0.25

    def _blocks(self, s: Stage, gain: float) -> list[nn.Module]:
        return [Block(s.channels, self.expansion, s.groups, gain, zero_last=not self.sn)
                for _ in range(s.blocks)]

    def generator(self, shape: Shape, extra: int = 0) -> Generator:
        """`extra`: inputs besides z (a class embedding, networks.conditional)."""
        stages = self.stages(shape)
        gain = self._gain(stages)
        layers: list[nn.Module] = [GenerativeBasis(self.z_dim + extra, stages[0].channels)]
        for prev, s in zip([None, *stages[:-1]], stages, strict=True):
            if prev is not None:
                layers.append(Transition(prev.channels, s.channels, up=True))
            layers += self._blocks(s, gain)
        layers.append(_conv(stages[-1].channels, shape[0]))
        return Generator(self.z_dim, nn.Sequential(*layers))

    def trunk(self, shape: Shape, bias: bool = False) -> tuple[nn.Sequential, int]:
        """The critic up to its features: the image conv, the stages, the depthwise 4x4
        conv, flattened; returns it and its feature count (the 4 px stage's channels)."""
        stages = self.stages(shape)[::-1]
        gain = self._gain(stages)
        layers: list[nn.Module] = [_conv(shape[0], stages[0].channels)]
        for s, nxt in zip(stages, [*stages[1:], None], strict=True):
            layers += self._blocks(s, gain)
            if nxt is not None:
                layers.append(Transition(s.channels, nxt.channels, up=False))
        ch = stages[-1].channels
        layers += [_msr(nn.Conv2d(ch, ch, 4, groups=ch, bias=False)), nn.Flatten()]
        return nn.Sequential(*layers), ch

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool = False) -> nn.Module:
        body, feats = self.trunk(shape)
        body.append(_msr(nn.Linear(feats, out_dim, bias=bias)))
        return _maybe_sn(body, self.sn)

    # class-conditional networks (cond=true), as R3GAN's code: a class embedding
    # concatenated to z, and a critic whose last layer's outputs are projected on the class
    def conditional_generator(self, shape: Shape, n_classes: int) -> ConcatGenerator:
        """[z; embed(y)] into the generative basis: embed(y) is a bias-free linear layer of
        the one-hot class with z_dim outputs, He-normal (so N(0, 1 / n_classes) entries)."""
        G = concat_generator(self, shape, n_classes)
        with torch.no_grad():
            G.embed.weight.normal_(0.0, n_classes ** -0.5)
        return G

    def conditional_critic(self, shape: Shape, n_classes: int, out_dim: int = 1,
                           bias: bool = False) -> nn.Module:
        trunk, feats = self.trunk(shape)
        return normalised(EmbeddingProjection(trunk, feats, n_classes, out_dim, bias), self.sn)


class EmbeddingProjection(Conditional):
    """R3GAN's conditional critic: D(x, y) = <W phi(x), embed(y)>, phi the trunk (its
    features, the 4 px stage's C channels), W its last linear layer with C outputs instead of
    one, embed(y) C numbers. No unconditional term: the class embedding is the output layer.

    As their code: W He-normal, embed a bias-free linear layer of the one-hot class with
    He-normal weights times 1 / sqrt(C) (entries N(0, 1 / (C n_classes))): the score starts
    1 / sqrt(n_classes) times the unconditional critic's (a one-hot input has one active
    entry of the n_classes its initialisation counts). An encoder (`out_dim` codes, `bias`:
    BiGAN-QP, O-GAN), which R3GAN has not, is the unconditional critic's linear layer of
    codes with the projection added to each, as ProjectionCritic's encoders."""

    def __init__(self, trunk: nn.Module, feats: int, n_classes: int, out_dim: int = 1,
                 bias: bool = False) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = _msr(nn.Linear(feats, feats, bias=False))
        self.embed = nn.Embedding(n_classes, feats)
        with torch.no_grad():
            self.embed.weight.normal_(0.0, (feats * n_classes) ** -0.5)
        self.codes = _msr(nn.Linear(feats, out_dim, bias=bias)) if out_dim > 1 or bias \
            else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        e = self.embed(self.current_labels()).to(h.dtype)
        proj = (self.head(h) * e).sum(1, keepdim=True)
        return proj if self.codes is None else self.codes(h) + proj


def _default_groups(hidden: int) -> int:
    g = max(1, hidden // GROUP_CHANNELS)
    while hidden % g:
        g -= 1
    return g
