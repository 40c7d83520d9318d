"""Per-sample loss terms shared by objectives, as functions of critic outputs.

`critic_*` return what the critic minimises given its outputs on real (`r`) and fake (`f`)
samples; `gen_*` what the generator minimises given the critic's output on fakes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full(x: torch.Tensor) -> torch.Tensor:
    """At least float32: losses of half-precision (autocast) outputs are computed in float32,
    float64 inputs stay float64 (exact checks)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def critic_wgan(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Negated E[T(x_r)] - E[T(x_f)]."""
    return f.mean() - r.mean()


def gen_wgan(f: torch.Tensor) -> torch.Tensor:
    return -f.mean()


def critic_sgan(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits: -log sigmoid(r) - log(1 - sigmoid(f))."""
    return F.softplus(-r).mean() + F.softplus(f).mean()


def gen_sgan_nonsaturating(f: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(f): the non-saturating generator loss."""
    return F.softplus(-f).mean()


def critic_hinge(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()


def gen_hinge(f: torch.Tensor) -> torch.Tensor:
    return -f.mean()


def critic_lsgan(r: torch.Tensor, f: torch.Tensor, a: float = 0.0, b: float = 1.0
                 ) -> torch.Tensor:
    """0.5 E[(T(x_r) - b)^2] + 0.5 E[(T(x_f) - a)^2]."""
    return 0.5 * (r - b).square().mean() + 0.5 * (f - a).square().mean()


def gen_lsgan(f: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    return 0.5 * (f - c).square().mean()
