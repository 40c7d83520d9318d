"""`data=cifar10`, `data=mnist`: torchvision's readers (or a prepared copy at data.root)."""

from __future__ import annotations

import torch

from ganqp_cli.data.base import ImageData, split_indices
from ganqp_cli.data.images import square_resize
from ganqp_cli.errors import UserError

KINDS = {"cifar10": ("CIFAR10", 3), "mnist": ("MNIST", 1)}


class Torchvision(ImageData):
    """CIFAR-10 or MNIST (training part) through torchvision; `download=true` fetches them."""

    KINDS = KINDS

    def __init__(self, root: str, res: int, name: str, hflip: bool = False,
                 download: bool = False, holdout: float = 0.0, split: str = "train",
                 on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        import torchvision
        if name not in KINDS:
            raise UserError(f"data.name={name!r} is not valid for a torchvision data set: "
                            f"one of {', '.join(KINDS)}.")
        cls_name, self.channels = KINDS[name]
        self.name, self.root = name, str(root)
        try:
            self.base = getattr(torchvision.datasets, cls_name)(root, train=True,
                                                                download=download)
        except RuntimeError as err:
            raise UserError(f"data.root={root}: {name} not found there ({err}). Add "
                            f"data.download=true to download it, or point data.root at a copy."
                            ) from None
        except OSError as err:  # no network, or an unwritable root
            raise UserError(f"data.root={root}: could not download {name} ({err}). Download "
                            "it where there is a network and point data.root at the copy."
                            ) from None
        self.index = split_indices(len(self.base), holdout, split)
        self.classes = list(self.base.classes)
        self._labels = torch.as_tensor(self.base.targets, dtype=torch.int64)[self.index]

    def __len__(self) -> int:
        return len(self.index)

    def read(self, index: int) -> torch.Tensor:
        return square_resize(self.base[int(self.index[index])][0], self.res, self.channels)

    def describe(self, index: int) -> str:
        return f"{self.name} item {int(self.index[index])} under {self.root}"

    def labels(self) -> torch.Tensor:
        return self._labels


def open_torchvision(root: str, res: int, name: str, hflip: bool = False,
                     download: bool = False, holdout: float = 0.0, split: str = "train",
                     on_error: str = "error") -> ImageData:
    """torchvision's data set, or a prepared data set when `root` holds one."""
    from ganqp_cli.data.folder import root_kind
    if root_kind(root) == "prepared":
        from ganqp_cli.data.prepared import PreparedImages
        return PreparedImages(root=str(root), res=res, name=name, channels=KINDS[name][1]
                              if name in KINDS else 3, hflip=hflip, holdout=holdout,
                              split=split, on_error=on_error)
    return Torchvision(root, res, name, hflip, download, holdout, split, on_error)
