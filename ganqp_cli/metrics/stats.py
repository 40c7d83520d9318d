"""Statistics of one side of a comparison: pytorch-fid's mean and covariance, the features
(for KID, precision/recall, density/coverage) and what made them; their .npz files."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganqp_cli.atomic import write_atomic
from ganqp_cli.errors import UserError


@dataclass
class Stats:
    """float64 mean and covariance (pytorch-fid's estimator) and float32 features."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # The class of each row of `features` (int64), when the images had classes (ifid).
    labels: np.ndarray | None = None
    # Derived values reused across evaluations against the same reference (k-NN radii).
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, features: np.ndarray, meta: dict[str, Any] | None = None,
           labels: Any = None) -> Stats:
        if features.shape[0] < 2:
            raise UserError(f"FID needs at least 2 images on each side; got {features.shape[0]}.")
        act = features.astype(np.float64)
        return cls(act.mean(axis=0), np.cov(act, rowvar=False), features.shape[0],
                   features.astype(np.float32), dict(meta or {}),
                   None if labels is None else np.asarray(labels, dtype=np.int64))

    def save(self, path: Path) -> None:
        """pytorch-fid's .npz (mu, sigma), plus n, the features and what made them.

        Written to a uniquely named file in the same folder, then renamed over `path`:
        concurrent writers (sweep jobs sharing a cache) never share a temporary file, and
        a reader sees the old file or a complete new one."""
        extra = {"features": self.features} if self.features is not None else {}
        if self.labels is not None:
            extra["labels"] = self.labels
        write_atomic(path, lambda f: np.savez(f, mu=self.mu, sigma=self.sigma, n=self.n,
                                              meta=json.dumps(self.meta), **extra))

    @classmethod
    def load(cls, path: Path, key: str = "ref") -> Stats:
        try:
            with np.load(path) as f:
                mu, sigma = f["mu"][:], f["sigma"][:]
                feats = f["features"][:] if "features" in f else None
                n = int(f["n"]) if "n" in f else (feats.shape[0] if feats is not None else 0)
                meta = json.loads(str(f["meta"])) if "meta" in f else {}
                labels = f["labels"][:].astype(np.int64) if "labels" in f else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"{key}={path} is not a statistics file: pytorch-fid's .npz with "
                            f"'mu' and 'sigma' is expected ({err}).") from None
        return cls(mu, sigma, n, feats, meta, labels)
