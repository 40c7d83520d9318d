"""Feature extractors: the common interface, the precision they run at, and the factory.

An extractor maps uint8 images (N, C, H, W), any size, 1 or 3 channels, to float32 features
(N, dims) and, when asked, the classifier's logits (N, n_classes), in one pass.
`identity()` (extractor, dims, weights, resize, tf32) names it in cached statistics,
statistics files and outputs.
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

from ganqp_cli.errors import UserError


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
    """Base of the extractors: `forward` gives features, `features_and_logits` both."""

    name = "extractor"
    dims: int
    n_classes: int
    weights_id: str

    def __init__(self, resize: str, tf32: bool) -> None:
        super().__init__()
        self.resize, self.tf32 = resize, bool(tf32)

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


EXTRACTOR_NAMES = ("inception", "digits")
_BUILT: dict[tuple, Extractor] = {}


def _weights_source(kind: str, weights: str | None) -> tuple[str, int | None]:
    """The weights file an extractor would load and its mtime (rank 0's view)."""
    if kind == "digits":
        from ganqp_cli.metrics.digits import digits_classifier_file
        file = digits_classifier_file(weights)
    else:
        from ganqp_cli.metrics.inception import hub_weights_file
        file = Path(weights).expanduser() if weights else hub_weights_file()
    return str(file), (file.stat().st_mtime_ns if file.is_file() else None)


def make_extractor(kind: str, dims: int | None = None, weights: str | None = None,
                   device: torch.device | str = "cpu", resize: str = "legacy",
                   tf32: bool = False) -> Extractor:
    """The extractor, reused while its weights file is unchanged: multirun sweeps
    (`ganqp fid -m ckpt=a,b`) run every job in one process. Under torchrun rank 0 reads
    (or, for digits, trains) the weights and every rank gets them by broadcast."""
    from ganqp_cli.metrics.ranks import on_main
    if kind not in EXTRACTOR_NAMES:
        raise UserError(f"fid.extractor={kind!r} is not valid: inception (pytorch-fid's "
                        "InceptionV3, the standard FID) or digits (offline, for the bundled "
                        "digits only).")
    key = (kind, dims, on_main(lambda: _weights_source(kind, weights)), resize, bool(tf32),
           str(device))
    if key not in _BUILT:
        _BUILT.clear()
        if kind == "digits":
            from ganqp_cli.metrics.digits import DigitsExtractor as cls
        else:
            from ganqp_cli.metrics.inception import InceptionExtractor as cls
        # Layers draw their initial weights (overwritten by the loaded ones) from the global
        # generator; without the fork, turning FID on, or a sweep job finding the extractor
        # already built, would change the training that follows.
        with torch.random.fork_rng(devices=[]):
            _BUILT[key] = cls.create(dims, weights, resize, bool(tf32)).to(device)
    return _BUILT[key]


def extractor_for(fc: Any, device: torch.device | str) -> Extractor:
    """The extractor the fid.* settings describe."""
    return make_extractor(str(fc.extractor), fc.dims, fc.weights, device, str(fc.resize),
                          bool(fc.tf32))
