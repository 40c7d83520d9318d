"""Images for the metrics: sources (folders, data sets, generators) and sharded extraction.

Under torchrun every rank extracts the features of its contiguous share of the images; the
shares are gathered in rank order, so every rank ends with the features one process makes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganqp_cli import distributed as dist_
from ganqp_cli.data import list_images
from ganqp_cli.errors import UserError
from ganqp_cli.generate import generate
from ganqp_cli.metrics.extractor_base import Extractor

# ---- image sources: n images, each loadable alone, or made a batch at a time --------------


@dataclass
class Source:
    """`n` uint8 images (C, H, W). Files and data sets load per item (in threads); a
    generator makes a whole batch (`batch(lo, hi)`)."""

    n: int
    describe: str
    item: Callable[[int], torch.Tensor] | None = None
    batch: Callable[[int, int], torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def decode(path: Path) -> torch.Tensor:
    """A file as pytorch-fid reads it: PIL, converted to RGB, native size; uint8 (3, H, W)."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:
        raise UserError(f"cannot read image {path}: {err}. Remove or replace the file.") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def folder_source(root: str, key: str) -> Source:
    files = list_images(root, key=key)
    return Source(len(files), f"{len(files)} images in {root}", item=lambda i: decode(files[i]),
                  info={"folder": str(root)})


def dataset_source(data: Any, n: int | None) -> Source:
    """Images of a ganqp data set at its `res`: all of them, or `n` picked by a fixed seed."""
    if len(getattr(data, "shape", ())) != 3:
        raise UserError(f"data={data.name} holds points, not images; FID needs an image data set.")
    total = len(data)
    if n is None or n >= total:
        idx = list(range(total))
    else:
        g = torch.Generator().manual_seed(0)
        idx = sorted(torch.randperm(total, generator=g)[:n].tolist())
    return Source(len(idx), f"{len(idx)} images of data set {data.name} at {data.res} px",
                  item=lambda i: data.load(idx[i]),
                  info={"data": data.name, "res": data.res, "root": str(getattr(data, "root", ""))})


def generator_source(G: nn.Module, z: torch.Tensor, device: torch.device, what: str) -> Source:
    """G(z) in eval mode, quantised to uint8 exactly as PNGs written by `ganqp sample` are."""

    def make(lo: int, hi: int) -> torch.Tensor:
        return generate(G, z[lo:hi], batch=hi - lo, device=device, uint8=True, out_device=None)

    return Source(z.shape[0], f"{z.shape[0]} samples of {what}", batch=make)


# ---- feature extraction ---------------------------------------------------------------------

@dataclass
class Extracted:
    """Features (n, dims) float32 and, when asked for, logits (n, classes) float32."""

    features: np.ndarray
    logits: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # the probes' outputs


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    return n * rank // world, n * (rank + 1) // world


def _groups(items: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Consecutive images of one size, stacked (folders may mix sizes; order is kept)."""
    start = 0
    for i in range(1, len(items) + 1):
        if i == len(items) or items[i].shape != items[start].shape:
            yield torch.stack(items[start:i])
            start = i


def _batches(src: Source, lo: int, hi: int, batch: int, workers: int
             ) -> Iterator[torch.Tensor]:
    spans = [(i, min(i + batch, hi)) for i in range(lo, hi, batch)]
    if src.item is None:
        for a, b in spans:
            yield src.batch(a, b)
        return
    # Decoding threads (PIL releases the GIL) stay two batches ahead of the extractor.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for a, b in spans:
            pending.append([pool.submit(src.item, i) for i in range(a, b)])
            if len(pending) > 2:
                yield from _groups([f.result() for f in pending.popleft()])
        while pending:
            yield from _groups([f.result() for f in pending.popleft()])


def extract(src: Source, extractor: Extractor, batch: int = 100, workers: int = 4,
            logits: bool = False,
            probes: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int]] | None = None
            ) -> Extracted:
    """Features (and logits, and the `probes`' outputs) of every image of `src`, in order,
    on every rank."""
    d = dist_.current()
    lo, hi = shard(src.n, d.rank, d.world)
    device = next(extractor.parameters()).device
    probes = probes or {}
    feats, outs = [], []
    extra: dict[str, list[torch.Tensor]] = {k: [] for k in probes}
    for x in _batches(src, lo, hi, batch, workers):
        x = x.to(device, non_blocking=True)
        f, o = extractor.run(x, logits)
        feats.append(f.float())
        if o is not None:
            outs.append(o.float())
        for k, (fn, _) in probes.items():
            extra[k].append(fn(x).float())

    def gathered(parts: list[torch.Tensor], width: int) -> np.ndarray:
        local = torch.cat(parts) if parts else torch.zeros(0, width, device=device)
        return dist_.all_gather_rows(local).cpu().numpy()

    return Extracted(gathered(feats, extractor.dims),
                     gathered(outs, extractor.n_classes) if logits else None,
                     {k: gathered(v, probes[k][1]) for k, v in extra.items()})
