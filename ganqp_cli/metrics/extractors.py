"""The extractor factory: `fid.extractor` names one of EXTRACTORS, `make_extractor` builds it.

The interface and the helpers the extractors share live in extractor_base.py (re-exported
here for callers); this module imports the extractors, never the other way round.
"""

from __future__ import annotations

from typing import Any

import torch

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.digits import DigitsExtractor
from ganqp_cli.metrics.extractor_base import (
    Extractor,
    cache_dir,
    extraction_precision,
    file_digest,
    to_rgb,
)
from ganqp_cli.metrics.inception import InceptionExtractor
from ganqp_cli.metrics.ranks import on_main

__all__ = ["EXTRACTORS", "EXTRACTOR_NAMES", "Extractor", "cache_dir", "extraction_precision",
           "extractor_for", "file_digest", "make_extractor", "to_rgb"]

EXTRACTORS: dict[str, type[Extractor]] = {"inception": InceptionExtractor,
                                          "digits": DigitsExtractor}
EXTRACTOR_NAMES = tuple(EXTRACTORS)
_BUILT: dict[tuple, Extractor] = {}


def _weights_source(kind: str, weights: str | None) -> tuple[str, int | None]:
    """The weights file an extractor would load and its mtime (rank 0's view)."""
    file = EXTRACTORS[kind].weights_file(weights)
    return str(file), (file.stat().st_mtime_ns if file.is_file() else None)


def make_extractor(kind: str, dims: int | None = None, weights: str | None = None,
                   device: torch.device | str = "cpu", resize: str = "legacy",
                   tf32: bool = False) -> Extractor:
    """The extractor, reused while its weights file is unchanged: multirun sweeps
    (`ganqp fid -m ckpt=a,b`) run every job in one process. Under torchrun rank 0 reads
    (or, for digits, trains) the weights and every rank gets them by broadcast."""
    if kind not in EXTRACTORS:
        raise UserError(f"fid.extractor={kind!r} is not valid: inception (pytorch-fid's "
                        "InceptionV3, the standard FID) or digits (offline, for the bundled "
                        "digits only).")
    key = (kind, dims, on_main(lambda: _weights_source(kind, weights)), resize, bool(tf32),
           str(device))
    if key not in _BUILT:
        _BUILT.clear()
        # Layers draw their initial weights (overwritten by the loaded ones) from the global
        # generator; without the fork, turning FID on, or a sweep job finding the extractor
        # already built, would change the training that follows.
        with torch.random.fork_rng(devices=[]):
            _BUILT[key] = EXTRACTORS[kind].create(dims, weights, resize, bool(tf32)).to(device)
    return _BUILT[key]


def extractor_for(fc: Any, device: torch.device | str) -> Extractor:
    """The extractor the fid.* settings describe."""
    return make_extractor(str(fc.extractor), fc.dims, fc.weights, device, str(fc.resize),
                          bool(fc.tf32))
