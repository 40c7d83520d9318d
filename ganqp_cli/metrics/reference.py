"""Reference statistics: of a data set (cached), a folder, or a statistics file.

The cache lives in rank 0's $GANQP_CACHE/fid_stats (other nodes of a multi-node run need not
have it): only rank 0 reads and writes it, and the statistics reach the other ranks by
broadcast. The cache key names everything the numbers depend on: data set, resolution,
count, extractor, dims, weights, resize, TF32 and the data root.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ganqp_cli import distributed as dist_
from ganqp_cli.errors import UserError
from ganqp_cli.metrics.extractor_base import Extractor, cache_dir
from ganqp_cli.metrics.features import Source, extract
from ganqp_cli.metrics.ranks import on_main
from ganqp_cli.metrics.stats import Stats

# ganqp files written before resize and tf32 were recorded were made with these.
LEGACY_IDENTITY = {"resize": "legacy", "tf32": False}


def stats_key(info: dict[str, Any], n: int, extractor: Extractor) -> str:
    """Cache file name of a data set's statistics."""
    root = hashlib.sha256(str(info.get("root", "")).encode()).hexdigest()[:8]
    return (f"{info['data']}-{info['res']}px-n{n}-{extractor.name}{extractor.dims}-"
            f"{extractor.weights_id}-{extractor.resize}-{'tf32' if extractor.tf32 else 'fp32'}-"
            f"{root}.npz")


def meta_of(extractor: Extractor, src: Source) -> dict[str, Any]:
    return {**extractor.identity(), "source": src.describe}


def stats_of(src: Source, extractor: Extractor, fc: Any) -> Stats:
    """Statistics of every image of `src` (a collective under torchrun)."""
    got = extract(src, extractor, int(fc.batch), int(fc.workers))
    return Stats.of(got.features, meta_of(extractor, src))


def _read_cache(path: Path) -> Stats | None:
    if not path.is_file():
        return None
    try:
        return Stats.load(path, key="fid cache")
    except UserError as err:  # our own file, damaged: computing it again repairs it
        print(f"fid: ignoring a damaged cache file ({err})", flush=True)
        return None


def reference_stats(src: Source, extractor: Extractor, fc: Any, cache: bool = True
                    ) -> tuple[Stats, Path | None]:
    """Statistics of a data set, read from rank 0's cache when they were computed before."""
    path = cache_dir() / "fid_stats" / stats_key(src.info, src.n, extractor)
    found = on_main(lambda: _read_cache(path)) if cache else None
    if found is not None:
        return found, path
    if dist_.current().is_main:
        print(f"fid: computing reference statistics of {src.describe} ({extractor.name}, "
              f"{extractor.dims}-d)", flush=True)
    stats = stats_of(src, extractor, fc)
    if cache and dist_.current().is_main:
        stats.save(path)
    dist_.barrier()
    return stats, (path if cache else None)


def check_ref_meta(stats: Stats, extractor: Extractor, key: str) -> None:
    """A statistics file must come from the extractor this run uses (files without a record,
    e.g. pytorch-fid's own, are taken at their word)."""
    meta = {**LEGACY_IDENTITY, **stats.meta}
    if stats.mu.shape[0] != extractor.dims or meta.get("extractor", extractor.name) != \
            extractor.name:
        raise UserError(f"{key}: the statistics were computed with "
                        f"{meta.get('extractor', 'an extractor')} features of "
                        f"{stats.mu.shape[0]} dimensions; this run uses {extractor.name} "
                        f"with {extractor.dims} (set fid.extractor / fid.dims to match).")
    if meta.get("weights", extractor.weights_id) != extractor.weights_id:
        raise UserError(f"{key}: the statistics were computed with other {extractor.name} "
                        f"weights ({meta['weights']}, this run: {extractor.weights_id}); "
                        "recompute them (save_stats=FILE.npz) or pass the same fid.weights.")
    for name in ("resize", "tf32"):
        if stats.meta and meta[name] != getattr(extractor, name):
            raise UserError(f"{key}: the statistics were computed with fid.{name}="
                            f"{meta[name]}, this run uses fid.{name}="
                            f"{getattr(extractor, name)}; pass fid.{name}={meta[name]} or "
                            "recompute them (save_stats=FILE.npz).")
