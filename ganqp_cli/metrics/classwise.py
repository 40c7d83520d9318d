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
import torch

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.digits import classifier, read_channels
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


def check_reference(gen: list[str] | None, ref: Stats, ref_desc: str, metrics: list[Any]
                    ) -> None:
    """ifid compares class k with class k: the reference needs labels, and the same class
    names as the samples (where both are known)."""
    if not any(m.name == "ifid" for m in metrics):
        return
    if ref.labels is None:
        raise UserError(f"fid.metrics=[ifid] needs the class of every reference image, but the "
                        f"reference ({ref_desc}) has no labels. Use a data set with classes "
                        "(the run's own, data=NAME), or ref=DIR of class subfolders or with a "
                        "dataset.json.")
    names = ref.meta.get("classes")
    if names is not None and gen is not None and list(gen) != list(names):
        raise UserError(f"fid.metrics=[ifid]: the samples' classes ({', '.join(gen[:5])}, ...) "
                        f"are not the reference's ({', '.join(map(str, names[:5]))}, ...; "
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

# Classes the digits classifier reads: 10 digits (the image's grey mean, as it reads the
# digits), or the 1,000 three-digit numbers of stacked digits (one digit per channel R, G, B).
PLACES = {10: 1, 1000: 3}


def fits_digits(classes: list[str] | None) -> bool:
    """Whether label k is the number k written in the digits the classifier reads: 10
    classes named by their digit ("3", "3 - three"), or 1,000 named k ("042" or "42")."""
    if classes is None or len(classes) not in PLACES:
        return False
    if len(classes) == 10:
        return all(re.match(rf"{k}(\D|$)", str(c)) for k, c in enumerate(classes))
    return all(str(c).isdigit() and int(c) == k for k, c in enumerate(classes))


def check_acc_fits(classes: list[str] | None, key: str) -> None:
    if not fits_digits(classes):
        shown = "none" if classes is None else ", ".join(map(str, classes[:5])) + \
            (", ..." if len(classes) > 5 else "")
        raise UserError(f"{key}: fid.metrics=[acc] reads each sample's class with the digits "
                        "classifier, which fits the 10 digits (data=digits, mnist) and the "
                        "1,000 three-digit numbers of stacked digits; these classes are "
                        f"{shown}. Leave acc out of fid.metrics.")


def read_digits(images: torch.Tensor, net: Any) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> (N, 4): the digit the classifier reads in the image
    (channels averaged), then in each of R, G, B (the one channel thrice for grey)."""
    n, c = images.shape[:2]
    whole = net.run(images, logits=True)[1].argmax(1)
    per = read_channels(images, net)
    return torch.cat([whole[:, None], per.expand(n, 3) if c == 1 else per], 1)


def digit_probe(device: Any) -> tuple[Any, int]:
    """What extraction runs on every generated batch for `acc`: (function, width)."""
    net = classifier(device)
    return (lambda images: read_digits(images, net).float()), 4


def accuracy(inp: Any) -> dict[str, Any]:
    labels, read = inp.gen.labels, inp.extras["acc"].astype(np.int64)
    if labels is None:
        raise UserError("fid.metrics=[acc] needs the class each sample was generated for: a "
                        "class-conditional model (cond=true).")
    places = PLACES.get(int(inp.gen.meta.get("n_classes", 0)))
    if places is None:
        raise UserError("fid.metrics=[acc] fits 10 digit classes or 1,000 stacked-digit "
                        f"classes; these samples have {inp.gen.meta.get('n_classes')}.")
    if places == 1:
        right = read[:, 0] == labels
    else:
        want = np.stack([labels // 100, labels // 10 % 10, labels % 10], 1)
        right = (read[:, 1:] == want).all(1)
    return {"acc": float(right.mean()), "acc_n": int(len(labels))}


def acc_text(r: dict[str, Any]) -> str:
    return (f"class accuracy {r['acc']:.4f} (the digits classifier read {r['acc_n']} samples "
            "as the class they were generated for)")
