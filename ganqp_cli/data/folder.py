"""Image data sets on disk: a folder of image files, and the factory that also recognises an
LSUN LMDB directory or a prepared data set at `data.root`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganqp_cli.data.base import ImageData, split_indices
from ganqp_cli.data.images import list_images, read_image
from ganqp_cli.data.labels import FolderLabels, folder_labels


class ImageFolder(ImageData):
    """Any directory tree of png/jpg/jpeg/webp/bmp files (celebahq, ffhq, lsun-*, folder),
    decoded, cropped and resized on every draw. Its labels (data/labels.py: dataset.json or
    one subfolder per class) are read when first asked for, so that an unconditional run
    never depends on them."""

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
        self._keep, self._whole = keep, len(keep) == len(files)
        self._found: FolderLabels | None = None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> torch.Tensor:
        return read_image(self.files[index], self.res, self.channels)

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def _read_labels(self) -> FolderLabels:
        if self._found is None:
            files = ([Path(f) for f in self.files] if self._whole
                     else list_images(self.root))
            found = folder_labels(self.root, files)
            if found.labels is not None and not self._whole:
                found.labels = found.labels[self._keep]
            self._found = found
        return self._found

    @property
    def classes(self) -> list[str] | None:  # type: ignore[override]
        return self._read_labels().classes

    @property
    def unlabelled(self) -> str:  # type: ignore[override]
        return self._read_labels().note

    def labels(self) -> torch.Tensor:
        found = self._read_labels()
        if found.labels is None:
            return super().labels()
        return torch.from_numpy(found.labels)


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
