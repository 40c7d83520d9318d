"""The differentiable augmentations of DiffAugment (Zhao et al. 2020) on image batches in
[-1, 1], written from the paper's description: colour (brightness + U(-0.5, 0.5), saturation
x U(0, 2) around the per-pixel channel mean, contrast x U(0.5, 1.5) around the image mean),
translation (integer shifts of up to 1/8 of the side, zero fill) and cutout (a zeroed square
of half the side at a random centre).

Each operation takes its random numbers `u` (shape (N, k), uniform in [0, 1)) and a per-sample
switch `on` (N,) of 0/1, so ADA can apply it with probability p and DiffAugment always, and
so that tests can pass chosen values. All randomness comes from `uniform`, one function that
a distributed run may swap (`set_uniform`) for one that draws for the global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Uniform = Callable[[int, int, torch.device], torch.Tensor]


def torch_uniform(n: int, k: int, device: torch.device) -> torch.Tensor:
    """(n, k) uniforms from torch's global generator for `device` (checkpointed with the
    run, so a resumed run draws the same numbers)."""
    return torch.rand(n, k, device=device)


_uniform: Uniform = torch_uniform


def uniform(n: int, k: int, device: torch.device) -> torch.Tensor:
    return _uniform(n, k, device)


def set_uniform(fn: Uniform) -> Uniform:
    """Route every augmentation draw through `fn`; returns the previous function."""
    global _uniform
    previous, _uniform = _uniform, fn
    return previous


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1).to(like.dtype)


def brightness(x: torch.Tensor, u: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    return x + _per_sample((u[:, 0] - 0.5) * on, x)


def _where_on(on: torch.Tensor, new: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`new` where switched on, `x` itself (bitwise) elsewhere."""
    return torch.where(on.bool().view(-1, 1, 1, 1), new, x)


def saturation(x: torch.Tensor, u: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    mean = x.mean(1, keepdim=True)
    return _where_on(on, (x - mean) * _per_sample(2 * u[:, 0], x) + mean, x)


def contrast(x: torch.Tensor, u: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    mean = x.mean((1, 2, 3), keepdim=True)
    return _where_on(on, (x - mean) * _per_sample(u[:, 0] + 0.5, x) + mean, x)


def _side(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def translation(x: torch.Tensor, u: torch.Tensor, on: torch.Tensor, ratio: float = 0.125
                ) -> torch.Tensor:
    """out[i, j] = x[i - dy, j - dx] (0 outside), dy, dx uniform integers in [-s, s] with
    s = round(ratio * side)."""
    n, c, h, w = x.shape
    sy, sx = _side(h, ratio), _side(w, ratio)
    dy = ((u[:, 0] * (2 * sy + 1)).floor().long() - sy) * on.long()
    dx = ((u[:, 1] * (2 * sx + 1)).floor().long() - sx) * on.long()
    src_y = torch.arange(h, device=x.device)[None] - dy[:, None]  # (n, h)
    src_x = torch.arange(w, device=x.device)[None] - dx[:, None]  # (n, w)
    valid = (((src_y >= 0) & (src_y < h))[:, :, None]
             & ((src_x >= 0) & (src_x < w))[:, None, :])
    index = src_y.clamp(0, h - 1)[:, :, None] * w + src_x.clamp(0, w - 1)[:, None, :]
    moved = x.flatten(2).gather(2, index.flatten(1)[:, None].expand(n, c, h * w))
    return moved.view(n, c, h, w) * valid[:, None].to(x.dtype)


def cutout(x: torch.Tensor, u: torch.Tensor, on: torch.Tensor, ratio: float = 0.5
           ) -> torch.Tensor:
    """Zero a square of side round(ratio * side) centred at a uniform pixel (clipped at the
    border)."""
    _, _, h, w = x.shape
    sy, sx = _side(h, ratio), _side(w, ratio)
    y0 = (u[:, 0] * h).floor().long() - sy // 2
    x0 = (u[:, 1] * w).floor().long() - sx // 2
    ys = torch.arange(h, device=x.device)[None]
    xs = torch.arange(w, device=x.device)[None]
    inside = (((ys >= y0[:, None]) & (ys < (y0 + sy)[:, None]))[:, :, None]
              & ((xs >= x0[:, None]) & (xs < (x0 + sx)[:, None]))[:, None, :])
    cut = inside & on.bool()[:, None, None]
    return x * (~cut)[:, None].to(x.dtype)


# operation -> (uniforms it takes, function); policy -> its operations, in DiffAugment's order.
OPS = {"brightness": (1, brightness), "saturation": (1, saturation), "contrast": (1, contrast),
       "translation": (2, translation), "cutout": (2, cutout)}
POLICIES = {"color": ("brightness", "saturation", "contrast"), "translation": ("translation",),
            "cutout": ("cutout",)}


def apply_ops(x: torch.Tensor, ops: tuple[str, ...], p: float, ratios: dict[str, float]
              ) -> torch.Tensor:
    """Apply `ops` in order, each to each sample with probability p, from one draw per
    batch: a uniform per switch, then the operations' own. `ratios` holds the size ratio of
    the operations that take one (translation, cutout)."""
    n = x.shape[0]
    # float32 draws: in half precision a uniform near 1 would round to 1 (never < p = 1).
    u = uniform(n, len(ops) + sum(OPS[o][0] for o in ops), x.device).float()
    on, u = (u[:, :len(ops)] < p).float(), u[:, len(ops):]
    for i, op in enumerate(ops):
        k, fn = OPS[op]
        extra = {"ratio": ratios[op]} if op in ratios else {}
        x = fn(x, u[:, :k], on[:, i], **extra)
        u = u[:, k:]
    return x
