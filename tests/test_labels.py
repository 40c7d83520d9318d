"""Labels through the data protocol, checked against the files: every image written here is
one flat grey whose level encodes its class, so a batch's labels can be read back from its
own pixels (level 20 + 40 k is class k; resizing keeps a flat image flat). Folders with one
subfolder per class, StyleGAN2-ADA's dataset.json, MNIST's label file, prepared sets, the
worker and in-process streams, and unreadable images replaced by the next readable one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.data import Batches, Digits, ImageFolder, PreparedImages, Ring8, Torchvision
from ganqp_cli.data.prepared import read_meta
from ganqp_cli.errors import UserError
from tests.test_data import _write_idx

CPU = torch.device("cpu")


def level(k: int) -> int:
    return 20 + 40 * k


def flat(path: Path, k: int, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (level(k),) * 3).save(path)
    return path


def classes_of(batch: torch.Tensor) -> torch.Tensor:
    """The class each image's grey level encodes (uint8 batches as stored)."""
    x = batch.flatten(1).float()
    assert (x.max(1).values == x.min(1).values).all(), "an image is not flat"
    return ((x[:, 0] - 20) / 40).round().long()


def check_stream(data, workers: int, batch: int = 5, draws: int = 6, **kw) -> None:
    """Every label the stream delivers is the class of the image delivered with it."""
    b = Batches(data, batch, seed=3, device=CPU, workers=workers, labels=True, **kw)
    for _ in range(draws):
        x = b.next_raw()
        assert b.labels.dtype == torch.int64 and b.labels.shape == (batch,)
        assert torch.equal(b.labels, classes_of(x)), (b.labels, classes_of(x))
    b.close()


def class_folder(root: Path) -> dict[str, int]:
    """Three class subfolders (one nested a level deeper), named so that sorting matters:
    classes a_cat=0, b_dog=1, c_ant=2. Returns relative path -> class."""
    made = {}
    for name, k, count in (("b_dog", 1, 4), ("a_cat", 0, 3), ("c_ant/deep", 2, 5)):
        for i in range(count):
            made[f"{name}/img{i}.png"] = k
            flat(root / name / f"img{i}.png", k)
    return made


def test_subfolders_are_classes_sorted_by_name_and_the_stream_carries_them(tmp_path):
    made = class_folder(tmp_path / "imgs")
    d = ImageFolder(str(tmp_path / "imgs"), 16)
    assert d.classes == ["a_cat", "b_dog", "c_ant"]
    names = [Path(f).relative_to(tmp_path / "imgs").as_posix() for f in d.files]
    assert d.labels().tolist() == [made[n] for n in names]
    assert all(classes_of(d.load(i)[None]).item() == d.label(i) for i in range(len(d)))
    for workers in (0, 2):  # in-process and DataLoader worker processes
        check_stream(d, workers)


def test_dataset_json_gives_the_labels_whatever_the_folders(tmp_path):
    root = tmp_path / "imgs"
    given = {}
    for i in range(9):  # the class is not the folder: only the label file knows it
        k = (i * 5) % 4
        rel = f"{'x' if i % 2 else 'y'}/{i:02d}.png"
        flat(root / rel, k)
        given[rel] = k
    (root / "dataset.json").write_text(json.dumps({"labels": [[r, k] for r, k in given.items()]}))
    d = ImageFolder(str(root), 16)
    assert d.classes == ["0", "1", "2", "3"]
    assert all(d.label(i) == given[Path(f).relative_to(root).as_posix()]
               for i, f in enumerate(d.files))
    check_stream(d, 0)
    check_stream(d, 1)
    held = ImageFolder(str(root), 16, holdout=0.34, split="heldout")  # the split's labels
    assert len(held) == 3 and all(classes_of(held.load(i)[None]).item() == held.label(i)
                                  for i in range(3))
    # a "classes" list (what `ganqp sample format=folder` adds) names them, unused ones too
    doc = {"labels": [[r, k] for r, k in given.items()], "classes": list("abcdefg")}
    (root / "dataset.json").write_text(json.dumps(doc))
    d = ImageFolder(str(root), 16)
    assert d.classes == list("abcdefg") and d.labels().tolist() == [
        given[Path(f).relative_to(root).as_posix()] for f in d.files]


def test_an_unreadable_image_is_replaced_with_its_label(tmp_path):
    root = tmp_path / "imgs"
    class_folder(root)
    (root / "b_dog" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # class 1 file
    (root / "a_cat" / "img2.png").write_bytes(b"not an image")  # the last of class 0:
    # its replacement is the next file in sorted order, b_dog/img0.png, of class 1
    d = ImageFolder(str(root), 16, on_error="skip")
    assert d.fetch(2)[1] == 3 and d.label(2) == 0
    for workers in (0, 1):
        check_stream(d, workers, batch=6, draws=8, log=lambda text: None)


def test_prepared_sets_keep_labels_and_class_names(cli, tmp_path):
    root, out = tmp_path / "imgs", tmp_path / "p16"
    class_folder(root)
    (root / "a_cat" / "img1.png").write_bytes(b"not an image")
    r = cli("prepare", "data=folder", f"data.root={root}", "res=16", f"out={out}",
            "data.on_error=skip")
    assert r.code == 0 and "3 classes" in r.out, r
    meta = read_meta(out)
    assert meta["classes"] == ["a_cat", "b_dog", "c_ant"]
    folder = ImageFolder(str(root), 16, on_error="skip")
    prepared = PreparedImages(str(out), 16, on_error="skip")
    assert prepared.classes == folder.classes
    assert torch.equal(prepared.labels(), folder.labels())
    for resident in (1 << 30, 0):  # gathered on the device, and by host threads
        check_stream(prepared, 1, resident_bytes=resident)
    # the same labels, in the same stream order, as the folder it was made from
    a = Batches(folder, 4, seed=1, device=CPU, workers=0, labels=True, log=lambda t: None)
    b = Batches(prepared, 4, seed=1, device=CPU, workers=0, labels=True, log=lambda t: None)
    for _ in range(5):
        assert torch.equal(next(a), next(b)) and torch.equal(a.labels, b.labels)
    split = PreparedImages(str(out), 16, holdout=0.25, split="heldout", on_error="skip")
    assert torch.equal(split.labels(), folder.labels()[split.index])


def test_prepared_set_without_classes_says_so(cli, tmp_path):
    root, out = tmp_path / "imgs", tmp_path / "p16"
    for i in range(4):
        flat(root / f"{i}.png", i % 2)
    assert cli("prepare", "data=folder", f"data.root={root}", "res=16", f"out={out}").code == 0
    p = PreparedImages(str(out), 16)
    assert p.classes is None and "without classes" in p.unlabelled
    assert not (out / "labels.i64").exists()


def test_digits_ring8_and_mnist_labels_are_their_sources(tmp_path):
    from sklearn.datasets import load_digits
    target = load_digits().target
    assert Digits(16).labels().tolist() == target.tolist()
    held = Digits(16, holdout=0.2, split="heldout")
    from ganqp_cli.data import split_indices
    assert held.labels().tolist() == target[split_indices(1797, 0.2, "heldout").numpy()].tolist()
    ring = Ring8(n=500)
    nearest = torch.cdist(ring.tensor, ring.modes).argmin(1)
    assert ring.classes == [str(k) for k in range(8)] and torch.equal(ring.labels(), nearest)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.zeros((6, 28, 28), np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9], np.uint8)
    for stem, n in (("train", 6), ("t10k", 2)):
        _write_idx(raw / f"{stem}-images-idx3-ubyte", imgs[:n], 2051)
        _write_idx(raw / f"{stem}-labels-idx1-ubyte", labels[:n], 2049)
    m = Torchvision(str(tmp_path), 16, "mnist")
    assert m.labels().tolist() == labels.tolist() and m.classes[3] == "3 - three"


@pytest.mark.parametrize("layout, says", [
    ("loose", "lie directly in data.root"),
    ("mixed", "mixes labelled and unlabelled images: 2 lie directly in data.root"),
    ("null", '"labels": null'),
])
def test_folders_without_labels_say_why(tmp_path, layout, says):
    root = tmp_path / "imgs"
    for i in range(2):
        flat(root / f"{i}.png", 0)
    if layout == "mixed":
        flat(root / "cls" / "a.png", 1)
    if layout == "null":
        (root / "dataset.json").write_text('{"labels": null}')
    d = ImageFolder(str(root), 16)
    assert d.classes is None and says in d.unlabelled
    with pytest.raises(TypeError, match="no labels"):
        d.labels()


@pytest.mark.parametrize("labels, says", [
    ([["0.png", 0], ["1.png", 1], ["gone.png", 1]], "names 1 image(s) that are not under"),
    ([["0.png", 0]], "gives no label for 1 of the 2 images"),
    ([["0.png", 0], ["1.png", -2]], "label -2 of 1.png is out of range"),
    ([["0.png", 0], ["1.png", "cat"]], "label 'cat' of 1.png is out of range"),
    ({"0.png": 0}, "not in StyleGAN2-ADA's form"),
    (([["0.png", 0], ["1.png", 2]], ["a", "b"]),
     'label 2 is out of range: "classes" names 2 classes (labels 0 to 1)'),
    (([["0.png", 0], ["1.png", 1]], "ab"), '"classes" must be a list of class names'),
])
def test_bad_label_files_are_refused_naming_the_file(tmp_path, labels, says):
    root = tmp_path / "imgs"
    flat(root / "0.png", 0)
    flat(root / "1.png", 1)
    doc = {"labels": labels[0], "classes": labels[1]} if isinstance(labels, tuple) else \
        {"labels": labels}
    (root / "dataset.json").write_text(json.dumps(doc))
    d = ImageFolder(str(root), 16)  # an unconditional run never reads the labels
    assert len(d) == 2
    with pytest.raises(UserError, match="dataset.json") as err:
        d.classes  # noqa: B018
    assert says in str(err.value)


def test_a_table_without_labels_takes_the_item_labels():
    """An in-memory data set whose table() carries no labels (item i is storage row i) gets
    its labels() gathered by the stream's own indices."""
    from ganqp_cli.data.base import full_table

    class Bare(Digits):
        def table(self):
            return full_table(self.tensor)

    d = Bare(16)
    b = Batches(d, 8, seed=5, device=CPU, workers=0, labels=True)
    for j in range(3):
        x = b.next_raw()
        idx, _ = b.sampler.batch_keys(j)
        assert torch.equal(x, d.tensor[idx]) and torch.equal(b.labels, d.labels()[idx])
