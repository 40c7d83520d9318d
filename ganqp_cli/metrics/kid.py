"""KID: the unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3, mean and std over
random subsets (torch-fidelity's estimator and defaults)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ganqp_cli.errors import UserError


def kid_subsets(n_a: int, n_b: int, subsets: int, size: int, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs of the KID subsets: `size` rows of each side without replacement."""
    rng = np.random.RandomState(seed)
    for _ in range(subsets):
        yield rng.choice(n_a, size, replace=False), rng.choice(n_b, size, replace=False)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 of two equal-size samples, kernel (x.y / d + 1)^3."""
    m, d = x.shape
    k_xx, k_yy, k_xy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    off = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum())
    return float(off / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kid(fa: np.ndarray, fb: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, device: torch.device | None = None) -> tuple[float, float, int]:
    """KID mean and std over subsets, and the subset size used (clipped to both counts)."""
    size = min(subset_size, fa.shape[0], fb.shape[0])
    if size < 2:
        raise UserError("KID needs at least 2 images on each side.")
    ta = torch.from_numpy(fa).to(device or "cpu", torch.float64)
    tb = torch.from_numpy(fb).to(device or "cpu", torch.float64)
    vals = np.array([mmd2_unbiased(ta[torch.from_numpy(i).to(ta.device)],
                                   tb[torch.from_numpy(j).to(tb.device)])
                     for i, j in kid_subsets(fa.shape[0], fb.shape[0], subsets, size, seed)])
    return float(vals.mean()), float(vals.std()), size
