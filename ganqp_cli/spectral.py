"""Spectral normalisation (Miyato et al. 2018) whose power iteration runs in float32.

`torch.nn.utils.parametrizations.spectral_norm` computes sigma = u^T W v with `mv` and
`vdot` inside the module's forward pass, so under CUDA autocast they run in fp16/bf16: sigma
carries a relative error of ~1e-3 (fp16) or ~1e-2 (bf16) into every weight, and the
persistent vectors u, v drift in low precision. This parametrisation is the same algorithm
(the same buffers `_u`/`_v`, the same random start and 15 warm-up iterations, so networks
and checkpoints are interchangeable with torch's, bit for bit in fp32) with autocast turned
off around the iteration and the division; the layer's own convolution or matmul still
autocasts the normalised weight.

Networks call `spectral_normalise(module)` (every Conv/ConvTranspose/Linear layer) or
`spectral_norm(layer)` (one layer) from here instead of torch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

# The layers networks.spectral_normalise normalises today (critics hold no transposed convs).
LAYERS = (nn.Conv2d, nn.Linear)


class SpectralNorm(nn.Module):
    """weight / sigma(weight), sigma estimated by `n_power_iterations` steps of the power
    method per training-mode forward pass on the weight reshaped to (size(dim), -1)."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        if not -weight.ndim <= dim < weight.ndim:
            raise IndexError(f"dim={dim} is out of range for a {weight.ndim}-d weight")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.dim, self.eps, self.n_power_iterations = dim % weight.ndim, eps, n_power_iterations
        if weight.ndim > 1:
            mat = self._matrix(weight.detach().float())
            h, w = mat.shape
            self.register_buffer("_u", F.normalize(mat.new_empty(h).normal_(0, 1), dim=0,
                                                   eps=eps))
            self.register_buffer("_v", F.normalize(mat.new_empty(w).normal_(0, 1), dim=0,
                                                   eps=eps))
            self._iterate(mat, 15)

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:
        if self.dim != 0:
            weight = weight.movedim(self.dim, 0)
        return weight.flatten(1)

    @torch.no_grad()
    def _iterate(self, mat: torch.Tensor, n: int) -> None:
        # In place (out=): the buffers stay the module's own tensors (state dicts, EMA
        # copies and DataParallel replicas share them).
        for _ in range(n):
            self._u = F.normalize(torch.mv(mat, self._v), dim=0, eps=self.eps, out=self._u)
            self._v = F.normalize(torch.mv(mat.H, self._u), dim=0, eps=self.eps, out=self._v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            w = weight.float() if weight.dtype in (torch.float16, torch.bfloat16) else weight
            if w.ndim == 1:
                return F.normalize(w, dim=0, eps=self.eps)
            mat = self._matrix(w)
            if self.training:
                self._iterate(mat.detach(), self.n_power_iterations)
            # Clones: D(real) and D(fake) in one graph each need the vectors they used.
            u = self._u.clone(memory_format=torch.contiguous_format)
            v = self._v.clone(memory_format=torch.contiguous_format)
            sigma = torch.vdot(u, torch.mv(mat, v))
            return w / sigma

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value  # assigning a weight stores it as the unnormalised original


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: int | None = None) -> nn.Module:
    """Spectral norm on `module.<name>` (torch's signature; dim 1 for transposed convs)."""
    weight = getattr(module, name)
    if dim is None:
        dim = 1 if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d |
                              nn.ConvTranspose3d) else 0
    parametrize.register_parametrization(module, name,
                                         SpectralNorm(weight, n_power_iterations, dim, eps))
    return module


def spectral_normalise(m: nn.Module, layers: tuple[type[nn.Module], ...] = LAYERS
                       ) -> nn.Module:
    """Spectral norm on every layer of `m` of a type in `layers` that has none yet (call it
    after initialisation, so the power iteration starts from the final weights)."""
    for layer in list(m.modules()):
        if isinstance(layer, layers) and not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return m
