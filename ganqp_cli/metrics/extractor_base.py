"""What every feature extractor shares: the `Extractor` interface, the precision it runs at,
and the helpers its weights use (the cache directory, file digests, gray -> RGB).

An extractor maps uint8 images (N, C, H, W), any size, 1 or 3 channels, to float32 features
(N, dims) and, when asked, the classifier's logits (N, n_classes), in one pass.
`identity()` (extractor, dims, weights, resize, tf32) names it in cached statistics,
statistics files and outputs.

The extractors (inception.py, digits.py) import this module; the factory (extractors.py)
imports them. Nothing here imports another module of ganqp_cli.metrics.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn


def cache_dir() -> Path:
    """$GANQP_CACHE, else ~/.cache/ganqp: trained digits classifier, reference statistics."""
    return Path(os.environ.get("GANQP_CACHE") or Path.home() / ".cache" / "ganqp").expanduser()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Grayscale -> RGB by repeating the channel, as PIL's convert('RGB') does for 'L'."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@contextmanager
def extraction_precision(tf32: bool) -> Iterator[None]:
    """TF32 off for convolutions and matmuls (unless `tf32`) and cudnn.benchmark off (its
    choice of algorithm changes the float sums), whatever training chose; the previous
    settings come back afterwards."""
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark
    cuda.allow_tf32 = cudnn.allow_tf32 = bool(tf32)
    cudnn.benchmark = False
    try:
        yield
    finally:
        cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved


class Extractor(nn.Module):
    """Base of the extractors: `forward` gives features, `features_and_logits` both.

    A subclass sets `name`, `dims`, `n_classes`, `weights_id`, implements `_run`, and for the
    factory the classmethods `weights_file` (the file its weights come from) and `create`."""

    name = "extractor"
    dims: int
    n_classes: int
    weights_id: str

    def __init__(self, resize: str, tf32: bool) -> None:
        super().__init__()
        self.resize, self.tf32 = resize, bool(tf32)

    @classmethod
    def weights_file(cls, weights: str | None) -> Path:
        """The file `create` would load (rank 0's view; it may not exist yet)."""
        raise NotImplementedError

    @classmethod
    def create(cls, dims: int | None, weights: str | None, resize: str, tf32: bool
               ) -> Extractor:
        """Built on every rank from the weights rank 0 read."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        return {"extractor": self.name, "dims": self.dims, "weights": self.weights_id,
                "resize": self.resize, "tf32": self.tf32}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images, logits=False)[0]

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, logits = self.run(images, logits=True)
        assert logits is not None
        return feats, logits

    def run(self, images: torch.Tensor, logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.inference_mode(), extraction_precision(self.tf32):
            return self._run(images, logits)

    def _run(self, images: torch.Tensor, logits: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class NoFeatures(Extractor):
    """The extractor of an evaluation whose metrics need no features (`modes`, `acc`: the
    digits classifier reads the samples in their probes): no network to load (no Inception
    weights), zero-width features."""

    name, dims, n_classes, weights_id = "none", 0, 0, "none"

    def __init__(self) -> None:
        super().__init__("legacy", False)
        # where extraction runs (features.extract reads the extractor's device)
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def _run(self, images: torch.Tensor, logits: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return images.new_zeros((images.shape[0], 0), dtype=torch.float32), None
