"""Image data sets on disk: a folder of image files, and the factory that also recognises an
LSUN LMDB directory or a prepared data set at `data.root`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganqp_cli.data.base import ImageData, split_indices
from ganqp_cli.data.images import list_images, read_image


class ImageFolder(ImageData):
    """Any directory tree of png/jpg/jpeg/webp/bmp files (celebahq, ffhq, lsun-*, folder),
    decoded, cropped and resized on every draw."""

    def __init__(self, root: str, res: int, hflip: bool = False, name: str = "folder",
                 channels: int = 3, holdout: float = 0.0, split: str = "train",
                 on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        self.name, self.channels, self.root = name, channels, str(root)
        files = list_images(root)
        keep = split_indices(len(files), holdout, split).numpy()
        # One numpy string array, not a list of Path objects: DataLoader workers share it
        # copy-on-write without touching a refcount per file.
        self.files = np.array([str(files[i]) for i in keep])

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> torch.Tensor:
        return read_image(self.files[index], self.res, self.channels)

    def describe(self, index: int) -> str:
        return str(self.files[index])


def root_kind(root: str) -> str:
    """What `data.root` holds: a prepared data set, an LMDB database, or (else) a folder."""
    from ganqp_cli.data.prepared import is_prepared
    path = Path(str(root)).expanduser()
    if is_prepared(path):
        return "prepared"
    if (path / "data.mdb").is_file():
        return "lmdb"
    return "folder"


def open_images(root: str, res: int, name: str = "folder", channels: int = 3,
                hflip: bool = False, holdout: float = 0.0, split: str = "train",
                on_error: str = "error") -> ImageData:
    """The data set at `root`, whichever form it has: a prepared set (memory-mapped, no
    decoding), an LMDB directory as LSUN ships it (keys -> encoded images), or a folder."""
    kind = root_kind(root)
    if kind == "prepared":
        from ganqp_cli.data.prepared import PreparedImages as cls
    elif kind == "lmdb":
        from ganqp_cli.data.lmdb_set import LmdbImages as cls
    else:
        cls = ImageFolder
    return cls(root=str(root), res=res, name=name, channels=channels, hflip=hflip,
               holdout=holdout, split=split, on_error=on_error)
