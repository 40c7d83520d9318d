"""Scoring generated images with the selected metrics, once or over `fid.repeats` draws.

Used by `ganqp fid` and by FID during training, so that a checkpoint's numbers equal the
ones logged when it was written. Draw i uses the latents of seed fid.seed + i.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn

from ganqp_cli import distributed as dist_
from ganqp_cli.metrics import registry as R
from ganqp_cli.metrics.extractor_base import Extractor, NoFeatures
from ganqp_cli.metrics.extractors import extractor_for
from ganqp_cli.metrics.features import Extracted, Source, extract, generator_source
from ganqp_cli.metrics.stats import Stats


def extractor_of(fc: Any, metrics: list[R.Metric], device: torch.device | str) -> Extractor:
    """The fid.* extractor, or none at all when no selected metric needs features."""
    if R.needs_features(metrics):
        return extractor_for(fc, device)
    return NoFeatures().to(device)


def score(got: Extracted, ref: Stats | None, fc: Any, metrics: list[R.Metric],
          device: torch.device | None, src: Source | None = None) -> dict[str, Any]:
    """The selected metrics of one set of generated features (of the classes `src.labels`
    where it has them) against the reference."""
    labels = None if src is None else src.labels
    meta = {"n_classes": src.n_classes} if labels is not None else {}
    inp = R.Inputs(Stats.of(got.features, meta, labels), ref, got.logits, fc, device,
                   extras=got.extras)
    return R.compute(metrics, inp)


def score_source(src: Source, ref: Stats | None, extractor: Extractor, fc: Any,
                 metrics: list[R.Metric], device: torch.device | None) -> dict[str, Any] | None:
    """Extract (a collective) and score (rank 0; None on the other ranks)."""
    got = extract(src, extractor, int(fc.batch), int(fc.workers), R.needs_logits(metrics),
                  R.probes(metrics, next(extractor.parameters()).device))
    result = score(got, ref, fc, metrics, device, src) if dist_.current().is_main else None
    if result is not None:
        result["n"] = int(got.features.shape[0])
    return result


def score_generator(G: nn.Module, z_dim: int, n: int, ref: Stats | None, extractor: Extractor,
                    fc: Any, metrics: list[R.Metric], device: torch.device, what: str,
                    class_counts: list[int] | None = None) -> list[dict[str, Any]] | None:
    """One result per draw (fid.repeats of them) on rank 0; None on the other ranks. A
    class-conditional G draws its classes with `class_counts` (its data's frequencies)."""
    from ganqp_cli.classes import draw_labels
    from ganqp_cli.sampling import latents
    draws = []
    for i in range(int(fc.repeats)):
        seed = int(fc.seed) + i
        labels = (None if class_counts is None
                  else draw_labels(n, class_counts, len(class_counts), seed))
        src = generator_source(G, latents(n, z_dim, seed), device, what, labels,
                               len(class_counts or ()))
        draws.append(score_source(src, ref, extractor, fc, metrics, device))
        if draws[-1] is not None:
            draws[-1]["seed"] = seed
    return draws if dist_.current().is_main else None


def summarize(draws: list[dict[str, Any]], metrics: list[R.Metric]) -> dict[str, Any]:
    """One draw: its numbers. Several: each number's mean over the draws and, for every
    number with a direction, `<key>_repeat_std`, the sample standard deviation (ddof 1)."""
    if len(draws) == 1:
        return {k: v for k, v in draws[0].items() if k != "seed"}
    details = {d for m in metrics for d in m.details} | {"n"}
    out: dict[str, Any] = {}
    for key in draws[0]:
        if key == "seed":
            continue
        vals = [d[key] for d in draws]
        if key in details or any(v is None for v in vals):
            out[key] = vals[0] if key in details else None
        else:
            out[key] = statistics.fmean(vals)
    for key in R.logged_keys(metrics):
        if key in R.DIRECTIONS:
            vals = [d[key] for d in draws]
            out[f"{key}_repeat_std"] = (None if any(v is None for v in vals)
                                        else statistics.stdev(vals))
    return out
