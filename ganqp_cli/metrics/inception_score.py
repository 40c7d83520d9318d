"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), per split of the
samples, mean and std over the splits.

As torch-fidelity computes it (its defaults): float64 softmax of the logits, the samples
shuffled by np.random.RandomState(2020) before splitting, split i = rows [i n / s, (i+1) n / s),
std with ddof 0. The Inception logits are those of the 1008-way fc layer without its bias,
as the original TensorFlow code and torch-fidelity take them.
"""

from __future__ import annotations

import numpy as np
import torch

from ganqp_cli.errors import UserError

SHUFFLE_SEED = 2020


def inception_score(logits: np.ndarray, splits: int = 10, shuffle: bool = True
                    ) -> tuple[float, float]:
    """Mean and std of the Inception Score over `splits` splits of the rows of `logits`."""
    n = logits.shape[0]
    if n < splits:
        raise UserError(f"the Inception Score with fid.is_splits={splits} needs at least "
                        f"{splits} samples; got {n}.")
    x = torch.from_numpy(np.asarray(logits)).double()
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(SHUFFLE_SEED).permutation(n))]
    log_p = x.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_q = p[lo:hi].mean(dim=0, keepdim=True).log()
        kl = (p[lo:hi] * (log_p[lo:hi] - log_q)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
