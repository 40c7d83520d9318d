"""Labels of a folder of images: StyleGAN2-ADA's `dataset.json`, or one subfolder per class.

    dataset.json   {"labels": [["relative/path.png", 3], ...]} at data.root (StyleGAN2-ADA's
                   form; "labels": null means none): label k is class "k", k from 0 to the
                   largest label, or the k-th name of an optional "classes" list (ganqp's
                   addition, which `ganqp sample format=folder` writes: a sample folder
                   keeps its model's classes, also those it drew no sample of)
    subfolders     every image in a subfolder of data.root (at any depth below it), the
                   classes the subfolders' names, sorted (torchvision's ImageFolder)

dataset.json wins when both apply. A folder with images directly in data.root and none in
subfolders has no labels; one with images both there and in subfolders is ambiguous, and so
has no labels either, with a note that `cond=true` repeats when it refuses the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganqp_cli.errors import UserError

LABEL_FILE = "dataset.json"


@dataclass
class FolderLabels:
    """The classes and one label per file (in the files' order), or why there are none."""

    classes: list[str] | None
    labels: np.ndarray | None  # int64
    note: str = ""


def _relative(files: list[Path], root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


def from_label_file(path: Path, files: list[Path], root: Path) -> FolderLabels:
    """StyleGAN2-ADA's dataset.json; every image needs a label and every label an image."""
    key = f"data.root={root}: {path.name}"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{key} cannot be read ({err}); it must be StyleGAN2-ADA's form, "
                        '{"labels": [["relative/path.png", 3], ...]}.') from None
    entries = doc.get("labels") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and "labels" in doc and entries is None:
        return FolderLabels(None, None, f"its {path.name} says \"labels\": null")
    ok = isinstance(entries, list) and all(
        isinstance(e, list | tuple) and len(e) == 2 and isinstance(e[0], str) for e in entries)
    if not ok:
        raise UserError(f"{key} is not in StyleGAN2-ADA's form: a \"labels\" list of "
                        '[relative path, class index] pairs, e.g. {"labels": '
                        '[["0/img001.png", 0], ["1/img002.png", 1]]}.')
    given: dict[str, int] = {}
    for name, label in entries:
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise UserError(f"{key}: the label {label!r} of {name} is out of range: labels are "
                            "class indices, whole numbers from 0.")
        given[Path(name).as_posix()] = label
    names = _relative(files, root)
    known = set(names)
    missing = [n for n in given if n not in known]
    if missing:
        raise UserError(f"{key} names {len(missing)} image(s) that are not under data.root "
                        f"(e.g. {missing[0]}); the paths are relative to data.root. Remove "
                        "those entries or add the images.")
    without = [n for n in names if n not in given]
    if without:
        raise UserError(f"{key} gives no label for {len(without)} of the {len(names)} images "
                        f"under data.root (e.g. {without[0]}); label every image, or remove "
                        "the images that have none.")
    labels = np.array([given[n] for n in names], dtype=np.int64)
    return FolderLabels(_class_names(doc.get("classes"), int(labels.max()), key), labels)


def _class_names(given: object, largest: int, key: str) -> list[str]:
    """dataset.json's "classes" if it has them, else "0" to the largest label."""
    if given is None:
        return [str(k) for k in range(largest + 1)]
    if not (isinstance(given, list) and given and all(isinstance(c, str) for c in given)):
        raise UserError(f'{key}: "classes" must be a list of class names (strings), the k-th '
                        f"naming label k; got {str(given)[:80]}.")
    if largest >= len(given):
        raise UserError(f'{key}: the label {largest} is out of range: "classes" names '
                        f"{len(given)} classes (labels 0 to {len(given) - 1}).")
    return list(given)


def from_subfolders(files: list[Path], root: Path) -> FolderLabels:
    """One subfolder of data.root per class, classes sorted by name."""
    names = _relative(files, root)
    top = [n.split("/")[0] if "/" in n else None for n in names]
    loose = [n for n, t in zip(names, top, strict=True) if t is None]
    if len(loose) == len(names):
        return FolderLabels(None, None, "its images lie directly in data.root: it has no "
                            f"class subfolders and no {LABEL_FILE}")
    if loose:
        inside = next(n for n, t in zip(names, top, strict=True) if t is not None)
        return FolderLabels(None, None, f"it mixes labelled and unlabelled images: "
                            f"{len(loose)} lie directly in data.root (e.g. {loose[0]}) and "
                            f"{len(names) - len(loose)} in class subfolders (e.g. {inside}); "
                            "put every image in one subfolder per class, or give the labels "
                            f"in {LABEL_FILE}")
    classes = sorted(set(top))
    index = {c: k for k, c in enumerate(classes)}
    return FolderLabels(classes, np.array([index[t] for t in top], dtype=np.int64))


def folder_labels(root: str, files: list[Path]) -> FolderLabels:
    """The labels of the image files `files` (sorted, all under `root`)."""
    path = Path(str(root)).expanduser()
    label_file = path / LABEL_FILE
    if label_file.is_file():
        return from_label_file(label_file, files, path)
    return from_subfolders(files, path)
