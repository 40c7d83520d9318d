"""Metrics of a class-conditional model (`cond=true`), by class.

    ifid  intra-class FID: the mean over classes of the FID between the samples generated
          for class k and the reference images of class k (Miyato & Koyama 2018). The
          reference statistics hold every image's features and label (cached with them), so
          each class's mean and covariance come from the cache without a new extraction.
          Classes with fewer than 2 samples on either side are left out; `ifid_classes`
          says how many were measured.
    acc   the share of samples the project's digits classifier reads as the class they were
          generated for (ganqp_cli.metrics.digits), on data whose classes it fits: 10 digit
          classes of one channel (digits, mnist), or three-digit classes of three channels
          (stacked digits, one digit per channel). `acc_n`: the samples read.

Both need the generated samples' labels: a conditional checkpoint or run (whose classes are
drawn with the data's frequencies), or `samples=DIR` with the dataset.json that
`ganqp sample format=folder` writes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.frechet import frechet_distance
from ganqp_cli.metrics.stats import Stats

NAMES = ("ifid", "acc")


def needs_labels(metrics: list[Any]) -> bool:
    return any(m.name in NAMES for m in metrics)


def check_generated(classes: list[str] | None, cfg: Any) -> None:
    """`ganqp fid` with ifid or acc: the samples must have classes."""
    if classes is None:
        what = f"ckpt={cfg.ckpt} is not class-conditional (trained with cond=false)" \
            if cfg.get("ckpt") is not None else f"samples={cfg.samples} has no labels " \
            "(no dataset.json, no class subfolders)"
        raise UserError(f"fid.metrics={list(cfg.fid.metrics)}: ifid and acc measure samples "
                        f"of known classes, but {what}. Use a checkpoint trained with "
                        "cond=true (or the folder `ganqp sample format=folder` writes from "
                        "one), or leave ifid and acc out of fid.metrics.")


def check_reference(gen: list[str] | None, ref: list[str] | None, ref_desc: str) -> None:
    """ifid compares class k with class k: both sides must name the same classes."""
    if ref is not None and gen is not None and list(gen) != list(ref):
        raise UserError(f"fid.metrics=[ifid]: the samples' classes ({', '.join(gen[:5])}, ...) "
                        f"are not the reference's ({', '.join(map(str, ref[:5]))}, ...; "
                        f"{ref_desc}); measure against the data set the model was trained on.")


def _class_stats(ref: Stats, k: int) -> Stats:
    key = ("class_stats", k)
    if key not in ref.memo:  # k-NN metrics clear the memo; recomputing is cheap
        ref.memo[key] = Stats.of(ref.features[ref.labels == k])
    return ref.memo[key]


def intra_fid(inp: Any) -> dict[str, Any]:
    gen, ref = inp.gen, inp.ref
    if gen.labels is None or ref.labels is None:
        raise UserError("fid.metrics=[ifid] needs the class of every image on both sides: a "
                        "class-conditional model (cond=true) and a reference data set with "
                        "labels (its own data, data=NAME, or ref=DIR of class subfolders).")
    values = []
    for k in np.intersect1d(gen.labels, ref.labels):
        g, r = gen.labels == k, ref.labels == k
        if g.sum() < 2 or r.sum() < 2:
            continue
        values.append(frechet_distance(Stats.of(gen.features[g]), _class_stats(ref, int(k)),
                                       str(inp.fc.method), inp.device))
    return {"ifid": float(np.mean(values)) if values else None, "ifid_classes": len(values)}


def ifid_text(r: dict[str, Any]) -> str:
    value = "n/a" if r["ifid"] is None else format(r["ifid"], ".6g")
    return f"intra-class FID {value} (mean over {r['ifid_classes']} classes)"


# ---- acc: the digits classifier reads the class ------------------------------------------------

def digit_codes(classes: list[str] | None, channels: int) -> np.ndarray | None:
    """(classes, channels) digits each class stands for, one per channel, when the digits
    classifier fits: one channel and 10 classes whose names start with their digit ("3",
    "3 - three"), or three channels and classes named by three digits ("042"); else None."""
    if classes is None or channels not in (1, 3):
        return None
    if channels == 1 and len(classes) == 10:
        ok = all(re.match(rf"{k}(\D|$)", str(c)) for k, c in enumerate(classes))
        return np.arange(10).reshape(10, 1) if ok else None
    if channels == 3 and all(re.fullmatch(r"\d{3}", str(c)) for c in classes):
        return np.array([[int(d) for d in str(c)] for c in classes])
    return None


def check_acc_fits(classes: list[str] | None, channels: int, key: str) -> None:
    if digit_codes(classes, channels) is None:
        shown = "none" if classes is None else ", ".join(map(str, classes[:5])) + \
            (", ..." if len(classes) > 5 else "")
        raise UserError(f"{key}: fid.metrics=[acc] reads each sample's class with the digits "
                        "classifier, which fits 10 digit classes of one channel (data=digits, "
                        "mnist) or three-digit classes of three channels (stacked digits); "
                        f"these samples have {channels} channel(s) and classes {shown}. Leave "
                        "acc out of fid.metrics.")


def accuracy(read: np.ndarray, labels: np.ndarray, codes: np.ndarray) -> float:
    """The share of samples whose channels' digits (`read`, (n, channels)) are all those of
    the class they were generated for."""
    return float((read == codes[labels]).all(1).mean())
