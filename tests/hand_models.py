"""Checkpoints written by hand whose networks compute known functions, and those functions
computed independently in NumPy (float64): oracles for `ganqp sample` and `ganqp reconstruct`
that do not go through the code they check.

The networks are the real `arch=dcgan` ones at 16 px (width 1/32: 2 channels, z_dim 8, no
critic normalisation), with weights chosen so that:

- generator: the first transposed convolution (1x1 -> 4x4) maps z to L z in channel 0 and
  -L z in channel 1; each later one has the taps [1:3, 1:3] of channel c -> c set to 1 (to
  -1 from channel 1 in the last), which for a 4x4 kernel, stride 2, padding 1 is an exact
  nearest-neighbour 2x upsampling. BatchNorm (eval: running mean 0, variance 1) adds the
  shifts B1, B2. With h(v) = relu(up2(relu(v / s + B1)) / s + B2), s = sqrt(1 + eps):
  G(z) = tanh(up2(h(L z) - h(-L z))), both signs, so pixels on both sides of grey.
- encoder: each stride-2 convolution has taps [1:3, 1:3] = 1/4, an exact 2x2 average
  pooling (plus 1 on the first, undone by the last layer's bias, so LeakyReLU never sees a
  negative value), and the last 4x4 convolution is a linear map M: E(x) = M pool4(x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from ganqp_cli import checkpoint as ckpt
from ganqp_cli.config import make

RES, Z, PAD = 16, 8, 2
B1, B2, BN_EPS = 0.5, -0.25, 1e-5
OVERRIDES = ["arch=dcgan", f"res={RES}", "arch.width=0.03125", f"arch.z_dim={Z}",
             "arch.d_norm=none"]


def linear_map(seed: int, rows: int, cols: int, scale: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, (rows, cols))


# -- the functions, in NumPy -------------------------------------------------------------
def up2(a: np.ndarray) -> np.ndarray:
    return a.repeat(2, axis=-2).repeat(2, axis=-1)


def generator_fn(L: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(n, z_dim) -> (n, 16, 16) in [-1, 1]; L is (16, z_dim), row i*4+j -> pixel (i, j)."""
    s = np.sqrt(1.0 + BN_EPS)
    a = (np.asarray(z, np.float64) @ L.T).reshape(-1, 4, 4)

    def h(v: np.ndarray) -> np.ndarray:
        return np.maximum(up2(np.maximum(v / s + B1, 0.0)) / s + B2, 0.0)

    return np.tanh(up2(h(a) - h(-a)))


def encoder_fn(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n, 16, 16) in [-1, 1] -> (n, z_dim); M is (z_dim, 16) over the 4x4 average pools."""
    n = x.shape[0]
    pooled = np.asarray(x, np.float64).reshape(n, 4, 4, 4, 4).mean(axis=(2, 4))
    return pooled.reshape(n, 16) @ M.T


def standardise(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(1, keepdims=True)
    return v / v.std(1, keepdims=True)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between rows of a and b (the textbook formula)."""
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None]
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def to_pixels(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> uint8, rounding to nearest, as a PNG holds it."""
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def seeded_normal(n: int, seed: int) -> np.ndarray:
    """z as the CLI documents it: torch.randn(n, z_dim) on the CPU from torch's generator
    seeded with `seed` (the one piece of the oracle that has to be torch)."""
    return torch.randn(n, Z, generator=torch.Generator().manual_seed(seed)).double().numpy()


# -- the weights -------------------------------------------------------------------------
@torch.no_grad()
def set_generator(G: nn.Module, L: np.ndarray) -> None:
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 3 and len(norms) == 2, "the dcgan generator at 16 px changed shape"
    for m in convs:
        m.weight.zero_()
        assert m.bias is None
    lz = torch.from_numpy(L.T.reshape(L.shape[1], 4, 4)).float()  # 2 Z: class-conditional
    convs[0].weight[:, 0], convs[0].weight[:, 1] = lz, -lz
    convs[1].weight[0, 0, 1:3, 1:3] = convs[1].weight[1, 1, 1:3, 1:3] = 1.0
    convs[2].weight[0, 0, 1:3, 1:3], convs[2].weight[1, 0, 1:3, 1:3] = 1.0, -1.0
    for m, shift in zip(norms, (B1, B2), strict=True):
        assert m.eps == BN_EPS
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
        m.weight.fill_(1.0)
        m.bias.zero_()
        m.bias[:2] = shift


@torch.no_grad()
def set_encoder(E: nn.Module, M: np.ndarray) -> None:
    convs = [m for m in E.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and not any(isinstance(m, nn.BatchNorm2d) for m in E.modules())
    for m in convs:
        m.weight.zero_()
        m.bias.zero_()
    for m in convs[:2]:
        m.weight[0, 0, 1:3, 1:3] = 0.25
    convs[0].bias[0] = 1.0
    convs[2].weight[:, 0] = torch.from_numpy(M.reshape(-1, 4, 4)).float()
    convs[2].bias.copy_(torch.from_numpy(-M.sum(1)).float())


def write_checkpoint(path: Path, objective: str, L: np.ndarray, L_ema: np.ndarray,
                     M: np.ndarray | None = None, it: int = 1234) -> Path:
    """A ganqp checkpoint (the keys `ganqp sample` and `ganqp reconstruct` read) whose raw
    generator computes generator_fn(L), its EMA generator generator_fn(L_ema) and, for an
    encoder model, its encoder encoder_fn(M)."""
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*OVERRIDES, f"objective={objective}"])
    torch.manual_seed(0)
    shape = (1, RES, RES)
    models = make(cfg.objective, "objective").build(make(cfg.arch, "arch"), shape)
    set_generator(models.G, L)
    if M is not None:
        set_encoder(models.encoder, M)
    ema = make(cfg.arch, "arch").generator(shape)
    set_generator(ema, L_ema)
    state = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "iter": it,
             "config": OmegaConf.to_container(cfg, resolve=True), "shape": list(shape),
             "z_dim": Z, "models": models.state_dict(), "ema": ema.state_dict(),
             "data": {"consumed": 0}, "extra": {}}
    ckpt.save_atomic(state, path)
    return path


def write_conditional_checkpoint(path: Path, L: np.ndarray, L_ema: np.ndarray,
                                 E: np.ndarray, E_ema: np.ndarray, classes: list[str],
                                 counts: list[int], it: int = 1234) -> Path:
    """A class-conditional checkpoint (cond=true: the class embedding concatenated to z)
    whose raw generator computes generator_fn(L, [z; E[y]]) for class y, and its EMA
    generator generator_fn(L_ema, [z; E_ema[y]]); L is (16, 2 Z), E (classes, Z)."""
    from ganqp_cli.networks import ConditionalArch
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*OVERRIDES, "objective=gan-qp", "cond=true"])
    torch.manual_seed(0)
    shape = (1, RES, RES)
    arch = ConditionalArch(make(cfg.arch, "arch"), len(classes))
    models = make(cfg.objective, "objective").build(arch, shape)
    ema = arch.generator(shape)
    for G, weights, embedding in ((models.G, L, E), (ema, L_ema, E_ema)):
        set_generator(G.net, weights)
        with torch.no_grad():
            G.embed.weight.copy_(torch.from_numpy(embedding).float())
    state = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "iter": it,
             "config": OmegaConf.to_container(cfg, resolve=True), "shape": list(shape),
             "z_dim": Z, "models": models.state_dict(), "ema": ema.state_dict(),
             "data": {"consumed": 0}, "extra": {}, "classes": classes, "class_counts": counts}
    ckpt.save_atomic(state, path)
    return path


# -- reading grids back ------------------------------------------------------------------
def tiles(path: Path, rows: int, cols: int) -> np.ndarray:
    """A saved grid cut into its (rows, cols, 16, 16) tiles; the padding must be white."""
    arr = np.asarray(Image.open(path))
    step = RES + PAD
    assert arr.shape == (rows * step + PAD, cols * step + PAD), arr.shape
    pad = np.ones(arr.shape, bool)
    out = np.empty((rows, cols, RES, RES), np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = PAD + r * step, PAD + c * step
            out[r, c] = arr[y:y + RES, x:x + RES]
            pad[y:y + RES, x:x + RES] = False
    assert (arr[pad] == 255).all(), "grid padding is not white"
    return out


def assert_pixels(got: np.ndarray, want: np.ndarray) -> None:
    """uint8 images equal up to float32-vs-float64 rounding at a .5 boundary: within 1
    level everywhere and exact nearly everywhere."""
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.99, (diff.max(), (diff == 0).mean())
