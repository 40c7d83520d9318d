"""`validate_data`: every data.* key checked before any work starts (train, fid data=,
reconstruct data=, prepare), each failure a one-paragraph message naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ganqp_cli import checks
from ganqp_cli.data.base import ON_ERROR
from ganqp_cli.data.images import IMAGE_EXTS
from ganqp_cli.errors import UserError

ROOT_HINT = ("data sets read from disk need data.root=PATH: a folder of images "
             f"({', '.join(IMAGE_EXTS)}), an LSUN LMDB directory, or a set written by "
             "`ganqp prepare`")


def _check_root(key: str, root: Any, download: bool) -> None:
    text = str(root)
    checks.require(bool(text.strip()), key, root, ROOT_HINT)
    path = Path(text).expanduser()
    if download:  # torchvision creates it and downloads into it
        checks.writable_dir(key, text)
        return
    if path.is_file():
        raise UserError(f"{key}={root} is a file, not a directory: point it at the folder "
                        "that holds the images (for LSUN, the *_lmdb directory holding "
                        "data.mdb; for a prepared set, the directory `ganqp prepare` wrote).")
    if not path.is_dir():
        raise UserError(f"{key}={root} is not a directory. Point it at a folder of images "
                        f"({', '.join(IMAGE_EXTS)}), an LSUN LMDB directory or a prepared data "
                        f"set, e.g. `{key}=/path/to/images`, or set GANQP_DATA to the folder "
                        "that holds the data sets.")


def validate_data(node: DictConfig | None, key: str = "data") -> None:
    """Check a data config node (the `data:` group of any command); raises UserError naming
    the first offending key. Keys a data set does not have are not required."""
    if node is None:
        return
    for name in sorted(OmegaConf.missing_keys(node)):
        full = f"{key}.{name}"
        hint = ROOT_HINT if name == "root" else f"set it, e.g. {full}=VALUE"
        raise UserError(f"{full} is required but not set: {hint}.")
    get = node.get
    if "name" in node:
        checks.require(isinstance(get("name"), str) and bool(get("name")), f"{key}.name",
                       get("name"), "the data set's name, a non-empty string")
    for flag in ("hflip", "download"):
        if flag in node:
            checks.boolean(f"{key}.{flag}", get(flag))
    if "channels" in node:
        checks.choice(f"{key}.channels", get("channels"), (1, 3),
                      " (1: grayscale, 3: RGB)")
    if "on_error" in node:
        checks.choice(f"{key}.on_error", get("on_error"), ON_ERROR,
                      " (error: stop at an unreadable image; skip: log it, count it and use "
                      "the next readable image)")
    if "holdout" in node:
        checks.number(f"{key}.holdout", get("holdout"), 0, 1, high_open=True,
                      note=" (the fraction kept out of training; 0: none)")
    if "split" in node:
        checks.choice(f"{key}.split", get("split"), ("train", "heldout"))
    if "n" in node:
        checks.whole(f"{key}.n", get("n"), 1)
    for positive in ("radius", "std"):
        if positive in node:
            checks.number(f"{key}.{positive}", get(positive), 0, low_open=True)
    if "seed" in node:
        checks.whole(f"{key}.seed", get("seed"), 0)
    if "root" in node:
        _check_root(f"{key}.root", get("root"), bool(get("download", False)))
