"""The Fréchet distance of two Gaussians (FID): pytorch-fid's function or the same quantity
from symmetric eigenvalues."""

from __future__ import annotations

import numpy as np
import torch

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.stats import Stats


def _trace_sqrt_product(a: Stats, b: Stats, device: torch.device | None) -> float:
    """tr sqrt(S_a S_b) from symmetric eigenvalues (S_a S_b is similar to a PSD matrix).

    With features and fewer samples than dimensions, S = X'X/(n-1) makes the nonzero
    eigenvalues of S_a S_b those of X S_b X'/(n-1): an n x n problem instead of d x d."""
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(device or "cpu", torch.float64)

    for x, other in ((a, b), (b, a)):
        if x.features is not None and x.n < x.mu.shape[0]:
            c = t(x.features.astype(np.float64) - x.mu)
            m = c @ t(other.sigma) @ c.T / (x.n - 1)
            return float(torch.linalg.eigvalsh(m).clamp_(min=0).sqrt_().sum())
    w, v = torch.linalg.eigh(t(a.sigma))
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    m = root @ t(b.sigma) @ root
    return float(torch.linalg.eigvalsh(m).clamp_(min=0).sqrt_().sum())


def frechet_distance(a: Stats, b: Stats, method: str = "eig",
                     device: torch.device | None = None) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 sqrt(S_a S_b)).

    `scipy`: pytorch-fid's own function (scipy.linalg.sqrtm, slow at 2048 dims); `eig`: the
    same quantity from symmetric eigenvalues, several times faster."""
    if a.mu.shape != b.mu.shape:
        raise UserError(f"the two sides have features of {a.mu.shape[0]} and {b.mu.shape[0]} "
                        "dimensions: compute both with the same fid.extractor and fid.dims.")
    if method == "scipy":
        from pytorch_fid.fid_score import calculate_frechet_distance
        return float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    if method != "eig":
        raise UserError(f"fid.method={method!r} is not valid: eig or scipy.")
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma)
                 - 2 * _trace_sqrt_product(a, b, device))
