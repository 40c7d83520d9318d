"""The metrics `fid.metrics` selects: each a small named piece that takes the generated and
the reference side (features, statistics, logits) and returns named numbers.

    fid  Fréchet distance                      fid                        lower is better
    kid  kernel inception distance             kid, kid_std               lower is better
    pr   improved precision and recall (k=pr_k) precision, recall         higher is better
    dc   density and coverage (k=dc_k)         density, coverage          higher is better
    is   Inception Score (is_splits splits)    inception_score, _std      higher is better
    ifid intra-class FID (conditional models)  ifid                       lower is better
    acc  classes read back (digits classifier) acc                        higher is better
    modes  modes of stacked digits covered     modes (higher), modes_kl (lower), no reference

`ganqp fid` and FID during training both go through `compute`. Metrics that need the
reference's features (kid, pr, dc) give None against a bare pytorch-fid .npz (mu, sigma).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ganqp_cli.metrics import classwise
from ganqp_cli.metrics import modes as modes_
from ganqp_cli.metrics.frechet import frechet_distance
from ganqp_cli.metrics.inception_score import inception_score
from ganqp_cli.metrics.kid import kid
from ganqp_cli.metrics.prdc import distance_dtype, knn_radii, prdc
from ganqp_cli.metrics.stats import Stats

LOWER, HIGHER = "lower", "higher"


@dataclass
class Inputs:
    """What the metrics see: the generated side (with features), the reference, the
    generated side's classifier logits (when a selected metric needs them), fid.* settings."""

    gen: Stats
    ref: Stats | None  # None when no selected metric needs one (`is` alone)
    logits: np.ndarray | None
    fc: Any
    device: torch.device | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # the probes' outputs


@dataclass(frozen=True)
class Metric:
    name: str
    keys: dict[str, str | None]  # logged numbers -> LOWER / HIGHER is better, None: a spread
    details: tuple[str, ...]     # settings reported beside them by `ganqp fid`
    compute: Callable[[Inputs], dict[str, Any]]
    text: Callable[[dict[str, Any]], str]
    needs_logits: bool = False
    needs_ref_features: bool = False
    needs_ref: bool = True
    needs_features: bool = True  # the extractor's features (False: no network is loaded)
    # (function, width) run on every batch of generated images, given the device; its
    # outputs reach `compute` as Inputs.extras[name] (n, width).
    probe: Callable[[Any], tuple[Callable[[torch.Tensor], torch.Tensor], int]] | None = None


def _fid(inp: Inputs) -> dict[str, Any]:
    return {"fid": frechet_distance(inp.gen, inp.ref, str(inp.fc.method), inp.device)}


def _kid(inp: Inputs) -> dict[str, Any]:
    k, s, size = kid(inp.gen.features, inp.ref.features, int(inp.fc.kid_subsets),
                     int(inp.fc.kid_subset_size), device=inp.device)
    return {"kid": k, "kid_std": s, "kid_subset_size": size}


def _manifolds(inp: Inputs) -> dict[int, dict[str, float]]:
    """pr and dc from one k-NN pass; the reference's radii are kept for the next call."""
    if "prdc" not in inp.memo:
        ks = tuple(sorted({int(inp.fc.pr_k), int(inp.fc.dc_k)}))
        dev = inp.device or torch.device("cpu")
        key = ("knn_radii", ks, str(dev))
        if key not in inp.ref.memo:
            inp.ref.memo.clear()
            inp.ref.memo[key] = knn_radii(
                torch.from_numpy(inp.ref.features).to(dev, torch.float64), ks,
                distance_dtype(inp.ref.features, inp.gen.features))
        inp.memo["prdc"] = prdc(inp.ref.features, inp.gen.features, ks, dev,
                                real_radii=inp.ref.memo[key])
    return inp.memo["prdc"]


def _pr(inp: Inputs) -> dict[str, Any]:
    k = int(inp.fc.pr_k)
    m = _manifolds(inp)[k]
    return {"precision": m["precision"], "recall": m["recall"], "pr_k": k}


def _dc(inp: Inputs) -> dict[str, Any]:
    k = int(inp.fc.dc_k)
    m = _manifolds(inp)[k]
    return {"density": m["density"], "coverage": m["coverage"], "dc_k": k}


def _is(inp: Inputs) -> dict[str, Any]:
    mean, std = inception_score(inp.logits, int(inp.fc.is_splits))
    return {"inception_score": mean, "inception_score_std": std,
            "is_splits": int(inp.fc.is_splits)}


def _num(v: Any, fmt: str = ".6g") -> str:
    return "n/a" if v is None else format(v, fmt)


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("fid", {"fid": LOWER}, (), _fid, lambda r: f"FID {_num(r['fid'])}"),
    Metric("kid", {"kid": LOWER, "kid_std": None}, ("kid_subset_size",), _kid,
           lambda r: f"KID {_num(r['kid'])} ± {_num(r['kid_std'], '.2g')} "
                     f"(subsets of {r['kid_subset_size']})", needs_ref_features=True),
    Metric("pr", {"precision": HIGHER, "recall": HIGHER}, ("pr_k",), _pr,
           lambda r: f"precision {_num(r['precision'], '.4f')}  recall "
                     f"{_num(r['recall'], '.4f')} (k={r['pr_k']})", needs_ref_features=True),
    Metric("dc", {"density": HIGHER, "coverage": HIGHER}, ("dc_k",), _dc,
           lambda r: f"density {_num(r['density'], '.4f')}  coverage "
                     f"{_num(r['coverage'], '.4f')} (k={r['dc_k']})", needs_ref_features=True),
    Metric("is", {"inception_score": HIGHER, "inception_score_std": None}, ("is_splits",), _is,
           lambda r: f"IS {_num(r['inception_score'], '.4f')} ± "
                     f"{_num(r['inception_score_std'], '.2g')} ({r['is_splits']} splits)",
           needs_logits=True, needs_ref=False),
    Metric("ifid", {"ifid": LOWER}, ("ifid_classes",), classwise.intra_fid, classwise.ifid_text,
           needs_ref_features=True),
    Metric("acc", {"acc": HIGHER}, ("acc_n",), classwise.accuracy, classwise.acc_text,
           needs_ref=False, needs_features=False, probe=classwise.digit_probe),
    Metric("modes", {"modes": HIGHER, "modes_kl": LOWER}, ("modes_n",), modes_.compute,
           modes_.text, needs_ref=False, needs_features=False, probe=modes_.probe),
)}

# Every logged number that has a direction: what fid.best may name.
DIRECTIONS: dict[str, str] = {k: d for m in METRICS.values() for k, d in m.keys.items() if d}


def selected(names: Any) -> list[Metric]:
    """fid.metrics (a list, or one name) as Metric objects; validated before (validate.py)."""
    return [METRICS[str(n)] for n in ([names] if isinstance(names, str) else names)]


def logged_keys(metrics: list[Metric]) -> list[str]:
    return [k for m in metrics for k in m.keys]


def needs_logits(metrics: list[Metric]) -> bool:
    return any(m.needs_logits for m in metrics)


def needs_reference(metrics: list[Metric]) -> bool:
    return any(m.needs_ref for m in metrics)


def needs_features(metrics: list[Metric]) -> bool:
    return any(m.needs_features for m in metrics)


def probes(metrics: list[Metric], device: Any) -> dict[str, tuple[Callable, int]]:
    """The per-batch functions of the selected metrics, by metric name."""
    return {m.name: m.probe(device) for m in metrics if m.probe is not None}


def compute(metrics: list[Metric], inp: Inputs) -> dict[str, Any]:
    """Every selected metric's numbers and details; None where the reference lacks what a
    metric needs (features of a bare .npz)."""
    out: dict[str, Any] = {}
    for m in metrics:
        if m.needs_ref_features and inp.ref.features is None:
            out.update(dict.fromkeys([*m.keys, *m.details]))
        else:
            out.update(m.compute(inp))
    return out


def describe(m: Metric, result: dict[str, Any]) -> str:
    """One line of the printout for metric `m`."""
    if m.needs_ref_features and result.get(next(iter(m.keys))) is None:
        return f"{m.name.upper()} n/a (the reference statistics hold no features)"
    return m.text(result)


def better(key: str, new: Any, old: Any) -> bool:
    """Whether `new` beats `old` for the logged number `key` (a missing or non-finite new
    value never does; anything finite beats a missing old one)."""
    if new is None or not math.isfinite(new):
        return False
    if old is None or not math.isfinite(old):
        return True
    return new < old if DIRECTIONS[key] == LOWER else new > old
