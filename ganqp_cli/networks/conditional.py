"""Class-conditional networks (`cond=true`): how a generator and a critic get the class.

The objectives call `m.G(z)` and `m.D(x)` and know nothing of classes. Rather than give
every objective, regulariser and augmentation a labels argument, the labels of the batch
being computed are put on the networks for the length of a block:

    with conditioned(models, y):    # the training phase, `ganqp sample`, FID
        loss = objective.critic_loss(models, real, z)

and the conditional modules (`Conditional`) read them in their forward pass. So every
objective trains conditionally unchanged: the fakes of a step are drawn with the labels of
the real batch they are paired with (GAN-QP's d(x_r, x_f) compares images of one class), and
a penalty's or an augmentation's extra critic calls see the same labels. No branch in the
loop, no host synchronisation (the labels stay on the device), and a network called outside
such a block fails loudly instead of silently ignoring the class.

What each architecture's authors used:

- the DCGAN types and the MLP: a learnt class embedding (z_dim numbers) concatenated to z
  (Mirza & Osindero 2014, with an embedding instead of a one-hot code);
- arch=resnet: conditional BatchNorm in the generator's blocks, a per-class gain and bias
  after an affine-free BatchNorm (SNGAN's projection-discriminator paper, BigGAN);
- every critic: the projection of Miyato & Koyama (2018), D(x, y) = psi(phi(x)) +
  <embed(y), phi(x)>, phi the critic's trunk; with spectral norm the embedding is normalised
  too, as theirs. Critics with several outputs (the encoder models) add the projection to
  each. A trunk that other critics build on (GAN-QP's pair critic) gets the class
  embedding concatenated to its features;
- arch=r3gan: R3GAN's own (networks.r3gan): the class embedding concatenated to z, and a
  critic whose last layer outputs an embedding-sized vector dotted with the class's
  embedding (no unconditional term).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ganqp_cli import spectral
from ganqp_cli.errors import UserError

Shape = tuple[int, ...]


class Conditional(nn.Module):
    """A module that reads the labels of the batch being computed (`conditioned`)."""

    _y: torch.Tensor | None = None

    def current_labels(self) -> torch.Tensor:
        if self._y is None:
            raise RuntimeError(f"{type(self).__name__} is class-conditional: call it inside "
                               "`with conditioned(module, labels):`")
        return self._y


@contextlib.contextmanager
def conditioned(module: nn.Module, y: torch.Tensor | None) -> Iterator[None]:
    """The conditional modules of `module` read the labels `y` (int64, one per sample of the
    batches computed inside the block); `y` None: nothing is set (unconditional runs)."""
    if y is None:
        yield
        return
    mods = [m for m in module.modules() if isinstance(m, Conditional)]
    before = [m._y for m in mods]
    for m in mods:
        m._y = y
    try:
        yield
    finally:
        for m, old in zip(mods, before, strict=True):
            m._y = old


def is_conditional(module: nn.Module) -> bool:
    return any(isinstance(m, Conditional) for m in module.modules())


def _xavier(m: nn.Linear | nn.Embedding) -> nn.Module:
    with torch.no_grad():
        nn.init.xavier_uniform_(m.weight)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    return m


class ConcatGenerator(Conditional):
    """G(z, y) = net([z; embed(y)]); `net` takes z_dim + embed_dim inputs."""

    def __init__(self, net: nn.Module, z_dim: int, n_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.embed = nn.Embedding(n_classes, embed_dim)  # N(0, 1), the scale of z
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        e = self.embed(self.current_labels()).to(z.dtype)
        return self.net(torch.cat([z, e], 1))


class CondBatchNorm2d(Conditional):
    """BatchNorm without its own affine, then a per-class gain (starting at 1) and bias
    (starting at 0)."""

    def __init__(self, ch: int, n_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.gain, self.bias = nn.Embedding(n_classes, ch), nn.Embedding(n_classes, ch)
        with torch.no_grad():
            self.gain.weight.fill_(1.0)
            self.bias.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.current_labels()
        h = self.bn(x)
        return h * self.gain(y)[:, :, None, None].to(h.dtype) + \
            self.bias(y)[:, :, None, None].to(h.dtype)


class ProjectionCritic(Conditional):
    """D(x, y) = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018); phi = `trunk`
    (features (N, feats)), psi a linear layer with `out_dim` outputs."""

    def __init__(self, trunk: nn.Module, feats: int, n_classes: int, out_dim: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = _xavier(nn.Linear(feats, out_dim, bias=bias))
        self.embed = _xavier(nn.Embedding(n_classes, feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        proj = (self.embed(self.current_labels()) * h).sum(1, keepdim=True)
        return self.head(h) + proj

    def normalise(self, on: bool) -> ProjectionCritic:
        return normalised(self, on)


def normalised(critic: nn.Module, on: bool) -> Any:
    """`on`: spectral norm on every layer of a projection critic, its class embedding
    (`critic.embed`) included (as Miyato & Koyama's code)."""
    if on:
        spectral.spectral_normalise(critic, (nn.Conv2d, nn.Linear))
        spectral.spectral_norm(critic.embed)
    return critic


class LabelledTrunk(Conditional):
    """phi(x, y) = [trunk(x); embed(y)]: a trunk that critics built on it (GAN-QP's pair
    critic) see with the class."""

    def __init__(self, trunk: nn.Module, n_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.embed = _xavier(nn.Embedding(n_classes, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return torch.cat([h, self.embed(self.current_labels()).to(h.dtype)], 1)


def concat_generator(arch: Any, shape: Shape, n_classes: int) -> ConcatGenerator:
    """The arch's generator taking z_dim more inputs, for a class embedding of z_dim numbers
    (`arch.generator(shape, extra=...)`)."""
    z_dim = int(arch.z_dim)
    G = ConcatGenerator(arch.generator(shape, extra=z_dim), z_dim, n_classes, z_dim)
    return G


def projection_critic(arch: Any, shape: Shape, n_classes: int, out_dim: int, bias: bool,
                      init: Any = None) -> ProjectionCritic:
    """The projection critic on the arch's trunk (`init`, if given, initialises the trunk
    as the arch's own critic is)."""
    trunk, feats = arch.trunk(shape, bias=bias)
    if init is not None:
        trunk = init(trunk)
    return ProjectionCritic(trunk, feats, n_classes, out_dim, bias).normalise(bool(arch.sn))


class ConditionalArch:
    """An arch (`arch=...`) whose networks take the class: `generator`, `critic`, `encoder`
    and `trunk` as the arch's, conditional; anything else is the arch's own."""

    def __init__(self, arch: Any, n_classes: int) -> None:
        self.arch, self.n_classes = arch, int(n_classes)
        name = getattr(arch, "name", type(arch).__name__)
        for method in ("conditional_generator", "conditional_critic"):
            if not callable(getattr(arch, method, None)):
                raise UserError(f"cond=true: arch={name} has no class-conditional networks; "
                                "use arch=gan-qp, dcgan, resnet, r3gan or mlp, or cond=false.")
        critic_bias = inspect.signature(arch.critic).parameters.get("bias")
        self.critic_bias = bool(critic_bias.default) if critic_bias is not None else True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.arch, name)

    def generator(self, shape: Shape) -> nn.Module:
        return self.arch.conditional_generator(shape, self.n_classes)

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool | None = None) -> nn.Module:
        bias = self.critic_bias if bias is None else bias
        return self.arch.conditional_critic(shape, self.n_classes, out_dim, bias)

    def encoder(self, shape: Shape, out_dim: int) -> nn.Module:
        return self.critic(shape, out_dim=out_dim, bias=True)

    def trunk(self, shape: Shape, **kwargs: Any) -> tuple[nn.Module, int]:
        trunk, feats = self.arch.trunk(shape, **kwargs)
        embed = min(feats, 128)
        return LabelledTrunk(trunk, self.n_classes, embed), feats + embed
