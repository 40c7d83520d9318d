"""Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem
et al. 2020): k-nearest-neighbour balls around the real and the generated features.

The definitions are those of the `prdc` package (compute_prdc(real, fake, k)):
- radius of a point: the distance to its k-th nearest neighbour in its own set (the set's
  distance matrix, self included, so the (k+1)-th smallest entry of its row);
- precision: the share of fakes inside at least one real ball; recall: the share of reals
  inside at least one fake ball; density: the number of real balls holding a fake, over k,
  averaged over the fakes; coverage: the share of reals whose nearest fake lies inside the
  real's own ball. "Inside" is strict (distance < radius).

Distances are computed as sklearn computes them for prdc: squared distances in float64,
rounded to the features' dtype (float32 for ganqp's features), then the square root. In 2048
dimensions distances concentrate (all about equal), so the rounding decides near-ties: exact
float64 comparisons differ from prdc's in about one decision in a few thousand. Rows go in
chunks so that 10k x 10k never exists at once; the radii of several k come from one pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ganqp_cli.errors import UserError

CHUNK_ELEMENTS = 1 << 24  # float64 distance entries per chunk: 128 MiB


def _distances(a: torch.Tensor, b: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor,
               dtype: torch.dtype) -> torch.Tensor:
    """Euclidean distances: -2 a.b + ||a||^2 + ||b||^2 in float64 (sklearn's expansion and
    order), rounded to `dtype`, clipped at 0, square root."""
    d = -2 * (a @ b.T)
    d += a2[:, None]
    d += b2[None, :]
    return d.to(dtype).clamp_(min=0).sqrt_()


def _chunks(n_rows: int, n_cols: int) -> Iterable[tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(1, n_cols))
    return ((lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step))


def knn_radii(x: torch.Tensor, ks: Iterable[int], dtype: torch.dtype = torch.float32
              ) -> dict[int, torch.Tensor]:
    """Distance of every row of x (float64) to its k-th nearest other row, for each k,
    rounded like the distances (see the module's docstring)."""
    ks = sorted(set(ks))
    if x.shape[0] <= ks[-1]:
        raise UserError(f"k-nearest-neighbour metrics with k={ks[-1]} need more than "
                        f"{ks[-1]} images on each side; got {x.shape[0]}.")
    sq = (x * x).sum(1)
    out = {k: torch.empty(x.shape[0], dtype=dtype, device=x.device) for k in ks}
    for lo, hi in _chunks(x.shape[0], x.shape[0]):
        d = _distances(x[lo:hi], x, sq[lo:hi], sq, dtype)
        rows = torch.arange(hi - lo, device=x.device)
        d[rows, rows + lo] = 0.0  # as sklearn sets the diagonal of X against itself
        nearest = d.topk(ks[-1] + 1, dim=1, largest=False).values  # ascending
        for k in ks:
            out[k][lo:hi] = nearest[:, k]
    return out


def distance_dtype(*arrays: np.ndarray) -> torch.dtype:
    """float32 when every side is float32 (sklearn returns float32 distances then)."""
    f32 = all(np.asarray(a).dtype == np.float32 for a in arrays)
    return torch.float32 if f32 else torch.float64


def prdc(real: np.ndarray, fake: np.ndarray, ks: Iterable[int] = (5,),
         device: torch.device | None = None,
         real_radii: dict[int, torch.Tensor] | None = None) -> dict[int, dict[str, float]]:
    """precision, recall, density and coverage for each k, as prdc.compute_prdc computes
    them. `real_radii`: knn_radii of `real` computed before (a fixed reference)."""
    ks = sorted(set(ks))
    dev = device or torch.device("cpu")
    dtype = distance_dtype(real, fake)
    r = torch.from_numpy(np.asarray(real)).to(dev, torch.float64)
    f = torch.from_numpy(np.asarray(fake)).to(dev, torch.float64)
    if r.shape[1] != f.shape[1]:
        raise UserError(f"the two sides have features of {r.shape[1]} and {f.shape[1]} "
                        "dimensions: compute both with the same fid.extractor and fid.dims.")
    rad_r = real_radii if real_radii is not None else knn_radii(r, ks, dtype)
    rad_f = knn_radii(f, ks, dtype)
    r2, f2 = (r * r).sum(1), (f * f).sum(1)
    in_real = {k: torch.zeros(f.shape[0], dtype=torch.bool, device=dev) for k in ks}
    balls = {k: torch.zeros(f.shape[0], dtype=torch.float64, device=dev) for k in ks}
    in_fake = {k: torch.zeros(r.shape[0], dtype=torch.bool, device=dev) for k in ks}
    covered = {k: torch.zeros(r.shape[0], dtype=torch.bool, device=dev) for k in ks}
    for lo, hi in _chunks(r.shape[0], f.shape[0]):
        d = _distances(r[lo:hi], f, r2[lo:hi], f2, dtype)  # (reals in chunk, fakes)
        nearest_fake = d.min(dim=1).values
        for k in ks:
            inside = d < rad_r[k][lo:hi, None]
            in_real[k] |= inside.any(dim=0)
            balls[k] += inside.sum(dim=0)
            in_fake[k][lo:hi] = (d < rad_f[k][None, :]).any(dim=1)
            covered[k][lo:hi] = nearest_fake < rad_r[k][lo:hi]
    return {k: {"precision": in_real[k].double().mean().item(),
                "recall": in_fake[k].double().mean().item(),
                "density": (balls[k] / k).mean().item(),
                "coverage": covered[k].double().mean().item()} for k in ks}
