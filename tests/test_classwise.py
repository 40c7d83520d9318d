"""The metrics of class-conditional models: `ifid` against closed forms (Fréchet distances of
per-class Gaussians whose answer is known), `acc` on real digits written with their true
labels and with wrong ones, and both through `ganqp fid` on a folder that `ganqp sample`
labelled, equal to the same numbers on the checkpoint."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from PIL import Image

from ganqp_cli.data import Digits
from ganqp_cli.errors import UserError
from ganqp_cli.metrics import classwise
from ganqp_cli.metrics.frechet import frechet_distance
from ganqp_cli.metrics.stats import Stats
from tests.conftest import TINY


def inputs(gen: Stats, ref: Stats, **extras) -> types.SimpleNamespace:
    return types.SimpleNamespace(gen=gen, ref=ref, fc=types.SimpleNamespace(method="eig"),
                                 device=None, extras=extras)


def test_ifid_is_the_mean_of_per_class_frechet_distances():
    """Class k of the samples is class k of the reference moved by a known shift, so each
    class's FID is the squared length of its shift (equal covariances); a class with one
    sample is left out, and so is a class the reference lacks."""
    rng = np.random.default_rng(0)
    ref_feats = rng.normal(size=(300, 4))
    ref_labels = np.repeat([0, 1, 2], 100)
    shifts = {0: np.array([1.0, 0, 0, 0]), 1: np.array([0, 2.0, 0, 2.0]), 2: np.zeros(4)}
    gen_feats = np.concatenate([ref_feats[ref_labels == k] + shifts[k] for k in range(3)]
                               + [rng.normal(size=(1, 4)), rng.normal(size=(5, 4))])
    gen_labels = np.concatenate([ref_labels, [1], [7] * 5])  # class 1 gets one sample more
    gen_labels[200] = 9  # ... and class 2 loses one sample to class 9 (not in the reference)
    gen = Stats.of(gen_feats, labels=gen_labels)
    ref = Stats.of(ref_feats, labels=ref_labels)
    got = classwise.intra_fid(inputs(gen, ref))
    assert got["ifid_classes"] == 3
    want = []
    for k in range(3):
        g = gen_feats[gen_labels == k]
        want.append(frechet_distance(Stats.of(g), Stats.of(ref_feats[ref_labels == k])))
    assert got["ifid"] == pytest.approx(np.mean(want), rel=1e-6)  # float32 features
    exact = classwise.intra_fid(inputs(Stats.of(ref_feats, labels=ref_labels), ref))
    assert exact["ifid"] == pytest.approx(0.0, abs=1e-9)
    moved = Stats.of(np.concatenate([ref_feats[ref_labels == k] + shifts[k] for k in range(3)]),
                     labels=ref_labels)
    assert classwise.intra_fid(inputs(moved, ref))["ifid"] == pytest.approx((1 + 8 + 0) / 3)


def test_ifid_needs_labels_on_both_sides():
    feats = np.random.default_rng(1).normal(size=(10, 3))
    with pytest.raises(UserError, match="ifid"):
        classwise.intra_fid(inputs(Stats.of(feats), Stats.of(feats, labels=np.zeros(10))))


def write_digits(folder, labels_of, count: int = 300) -> list[int]:
    """`count` real digits (16 px, grey) with the labels `labels_of(true label)` in a
    dataset.json, as `ganqp sample format=folder` writes them."""
    d = Digits(16)
    folder.mkdir()
    entries = []
    for i in range(count):
        Image.fromarray(d.tensor[i, 0].numpy()).save(folder / f"{i:06d}.png")
        entries.append([f"{i:06d}.png", labels_of(d.label(i))])
    (folder / "dataset.json").write_text(json.dumps({"labels": entries}))
    return [k for _, k in entries]


def test_acc_reads_real_digits_as_their_labels(cli, tmp_path):
    write_digits(tmp_path / "right", lambda k: k)
    write_digits(tmp_path / "wrong", lambda k: (k + 1) % 10)
    got = {}
    for name in ("right", "wrong"):
        out = tmp_path / f"{name}.json"
        r = cli("fid", f"samples={tmp_path / name}", "fid.extractor=digits",
                "fid.metrics=[acc]", f"out={out}")
        assert r.code == 0, r
        got[name] = json.loads(out.read_text())
    # the classifier's held-out accuracy is about 0.97; these are mostly its training digits
    assert got["right"]["acc"] >= 0.95 and got["right"]["acc_n"] == 300
    assert got["wrong"]["acc"] <= 0.03


def test_acc_reads_stacked_digits_channel_by_channel():
    """Three real digits as R, G, B: the class 100 R + 10 G + B is read back; the same
    images with the channels' roles swapped are not."""
    import torch
    d = Digits(16)
    rng = np.random.default_rng(2)
    picks = rng.integers(0, 1797, (200, 3))
    images = d.tensor[:, 0][torch.from_numpy(picks)]  # (200, 3, 16, 16)
    digits = d.labels()[torch.from_numpy(picks)].numpy()
    read = classwise.read_digits(images, classwise.classifier("cpu")).numpy()
    labels = digits @ np.array([100, 10, 1])
    gen = Stats.of(np.zeros((200, 2)), {"n_classes": 1000}, labels)
    acc = classwise.accuracy(inputs(gen, None, acc=read))["acc"]
    assert acc >= 0.9
    swapped = Stats.of(np.zeros((200, 2)), {"n_classes": 1000}, digits @ np.array([1, 10, 100]))
    distinct = digits[:, 0] != digits[:, 2]
    assert classwise.accuracy(inputs(swapped, None, acc=read))["acc"] <= 1 - distinct.mean() + 0.05


def test_acc_of_a_stacked_digits_folder_with_few_of_its_classes(cli, tmp_path):
    """`ganqp fid samples=DIR fid.metrics=[acc]` on 60 real stacked digits (RGB, a digit
    per channel) labelled 100 R + 10 G + B in a dataset.json naming the 1,000 classes, as
    `ganqp sample format=folder` writes it: most classes drew no sample, the largest label
    is not 999, and acc needs no extractor (no Inception weights here)."""
    import torch
    d = Digits(16)
    picks = np.random.default_rng(3).integers(0, 1797, (60, 3))
    images = d.tensor[:, 0][torch.from_numpy(picks)].permute(0, 2, 3, 1).numpy()
    labels = d.labels()[torch.from_numpy(picks)].numpy() @ np.array([100, 10, 1])
    folder = tmp_path / "s"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    doc = {"labels": [[f"{i:06d}.png", int(k)] for i, k in enumerate(labels)],
           "classes": [f"{k:03d}" for k in range(1000)]}
    (folder / "dataset.json").write_text(json.dumps(doc))
    out = tmp_path / "acc.json"
    r = cli("fid", f"samples={folder}", "fid.metrics=[acc]", f"out={out}")
    assert r.code == 0, r
    got = json.loads(out.read_text())
    assert got["acc"] >= 0.9 and got["acc_n"] == 60 and got["extractor"] == "none"


@pytest.mark.parametrize("classes, fits", [
    ([str(k) for k in range(10)], True),
    ([f"{k} - {w}" for k, w in enumerate("zero one two three four five six seven eight "
                                          "nine".split())], True),
    ([f"{k:03d}" for k in range(1000)], True),
    ([str(k) for k in range(1000)], True),
    ([str(k) for k in range(8)], False),
    (["a_cat", "b_dog"], False),
    ([str(k) for k in (1, 0, 2, 3, 4, 5, 6, 7, 8, 9)], False),
    (None, False),
])
def test_acc_fits_digit_classes_only(classes, fits):
    assert classwise.fits_digits(classes) == fits


@pytest.mark.slow
def test_a_checkpoint_and_its_labelled_sample_folder_score_alike(cli, tmp_path):
    """`ganqp fid ckpt=...` draws classes with the data's frequencies from fid.seed, as
    `ganqp sample format=folder seed=...` does: the same images, labels and numbers."""
    run = tmp_path / "run"
    assert cli("train", *TINY, "cond=true", f"hydra.run.dir={run}").code == 0
    ckpt = run / "checkpoints" / "last.pt"
    assert cli("sample", f"ckpt={ckpt}", "format=folder", "n=120", f"out={tmp_path / 's'}",
               "seed=0").code == 0
    labels = [k for _, k in json.loads((tmp_path / "s" / "dataset.json").read_text())["labels"]]
    assert len(set(labels)) == 10  # every class of the digits is drawn
    results = []
    for what in (f"ckpt={ckpt}", f"samples={tmp_path / 's'}"):
        out = tmp_path / "fid.json"
        r = cli("fid", what, "n=120", "data=digits", "res=16", "fid.extractor=digits",
                "fid.metrics=[fid,ifid,acc]", f"out={out}")
        assert r.code == 0, r
        results.append(json.loads(out.read_text()))
    for key in ("fid", "ifid", "ifid_classes", "acc"):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6), key
