"""What a data set is to the rest of ganqp: the `DataSet` protocol and the image base class.

A data set maps an index to one item: a uint8 image (C, H, W) at `res`, or a float point
(`ring8`). The training loop, `ganqp fid`, `sample` and `reconstruct` only use what the
protocol names, so none of them branches on which data set it has.

Labels: a data set with classes has `classes` (the class names; label k names classes[k])
and `labels()` (int64, one label per item, following the split); one without has
`classes = None`, and `unlabelled` says why (for the refusal of `cond=true`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

from ganqp_cli.data.images import Unreadable, image_grid
from ganqp_cli.errors import UserError

ON_ERROR = ("error", "skip")

# Fixed, not the run's seed: which items are held out is a property of the data config, so
# every run and `ganqp reconstruct` agree on it.
HOLDOUT_SEED = 1811_07296


def is_image_shape(shape: tuple[int, ...] | list[int]) -> bool:
    """Whether an item shape (a data set's, or a checkpoint's `shape`) is an image (C, H, W);
    the alternative is a point (D,)."""
    return len(shape) == 3


@dataclass
class Table:
    """An in-memory data set as one tensor: item i is `storage[rows[i]]`. `replaced[i]` marks
    items whose own pixels were unreadable, so `rows[i]` points at the next readable one."""

    storage: torch.Tensor
    rows: torch.Tensor
    replaced: torch.Tensor
    # One label per storage row (int64), so that a replaced item takes the label of the
    # item whose pixels it gets; None for data without classes.
    labels: torch.Tensor | None = None


@runtime_checkable
class DataSet(Protocol):
    """The interface every ganqp data set implements."""

    name: str            # the data option (digits, celebahq, ...), for messages and records
    res: int             # image side in pixels (0 for points)
    hflip: bool          # the stream flips a seeded half of the items horizontally
    in_memory: bool      # True: `table()` works; batches are gathered without worker processes
    on_error: str        # error | skip: what an unreadable item does
    root: str | None     # where it was read from (None for bundled or generated data)
    classes: list[str] | None  # class names, index = label (None: the data have no labels)

    @property
    def shape(self) -> tuple[int, ...]: ...          # one item's shape: (C, H, W) or (D,)

    @property
    def is_image(self) -> bool: ...

    def __len__(self) -> int: ...

    def load(self, index: int) -> torch.Tensor: ...  # one item, unflipped (uint8 or float)

    def fetch(self, index: int) -> tuple[torch.Tensor, int]: ...  # (item, index really read)

    def describe(self, index: int) -> str: ...       # the item's path or key, for messages

    def why(self, index: int) -> str: ...            # why an item is unreadable (for the log)

    def table(self) -> Table: ...                    # in_memory data sets only

    def labels(self) -> torch.Tensor: ...            # int64 (len,), data with classes only

    def label(self, index: int) -> int: ...          # one item's label

    def to_model(self, batch: torch.Tensor) -> torch.Tensor: ...  # a batch -> model input

    def render(self, samples: torch.Tensor, nrow: int | None = None) -> Image.Image: ...


def split_indices(n: int, holdout: float, split: str) -> torch.Tensor:
    """Sorted indices of `split` of n items: `heldout` is the last round(holdout * n) of a
    fixed-seed permutation, `train` the rest (all n when holdout is 0)."""
    if not isinstance(holdout, int | float) or not 0 <= holdout < 1:
        raise UserError(f"data.holdout={holdout!r} is not valid: a fraction in [0, 1) of the "
                        "data set kept out of training (0: none).")
    if split not in ("train", "heldout"):
        raise UserError(f"data.split={split!r} is not valid: train or heldout.")
    k = int(round(holdout * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    part = perm[n - k:] if split == "heldout" else perm[:n - k]
    if part.numel() == 0:
        raise UserError(f"data.split={split} with data.holdout={holdout} selects none of the "
                        f"{n} items; use a holdout fraction that keeps some in both parts.")
    return part.sort().values


def replacement_rows(bad: torch.Tensor) -> torch.Tensor:
    """For each of n items, the first readable one at or after it (cyclically): the rule
    `on_error=skip` replaces an unreadable item by, wherever the item is read."""
    n = bad.numel()
    good = (~bad).nonzero().flatten()
    if good.numel() == 0:
        raise UserError(f"none of the {n} items of the data set is readable.")
    pos = torch.searchsorted(good, torch.arange(n))
    return torch.where(pos < good.numel(), good[pos.clamp_max(good.numel() - 1)], good[0])


class ImageData(torch.utils.data.Dataset):
    """Base of the image data sets: `read(i)` decodes item i (raising `Unreadable`), the rest
    (on_error, flips, model scaling, grids) is shared."""

    name = "images"
    channels = 3
    in_memory = False
    is_image = True
    root: str | None = None
    classes: list[str] | None = None
    unlabelled = "it has no classes"  # why `classes` is None (said when cond=true is refused)

    def __init__(self, res: int, hflip: bool = False, on_error: str = "error") -> None:
        if on_error not in ON_ERROR:
            raise UserError(f"data.on_error={on_error!r} is not valid: error (stop at an "
                            "unreadable image) or skip (replace it by the next readable one).")
        self.res, self.hflip, self.on_error = res, hflip, on_error
        self._bad: set[int] = set()  # per process: known-unreadable items are not retried

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.res, self.res)

    def read(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return f"{self.name} item {index}"

    def why(self, index: int) -> str:
        try:
            self.read(index)
        except Unreadable as err:
            return f"{err.item}: {err.reason}"
        return self.describe(index)

    def fetch(self, index: int) -> tuple[torch.Tensor, int]:
        """Item `index`, or with on_error=skip and an unreadable item the next readable one
        (cyclically); returns it with the index actually read."""
        n = len(self)
        for k in range(n):
            j = (index + k) % n
            if j in self._bad:
                continue
            try:
                return self.read(j), j
            except Unreadable:
                if self.on_error == "error":
                    raise
                self._bad.add(j)
        raise UserError(f"none of the {n} items of data set {self.name} is readable "
                        f"({self.describe(index)} and all others failed to decode).")

    def load(self, index: int) -> torch.Tensor:
        return self.fetch(index)[0]

    def __getitem__(self, key: tuple[int, bool]) -> torch.Tensor:
        index, flip = key
        x = self.load(index)
        return x.flip(-1) if flip else x

    def table(self) -> Table:
        raise TypeError(f"data set {self.name} is not held in memory")

    def labels(self) -> torch.Tensor:
        raise TypeError(f"data set {self.name} has no labels ({self.unlabelled})")

    def label(self, index: int) -> int:
        return int(self.labels()[index])

    def to_model(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float().div_(127.5).sub_(1.0)

    def render(self, samples: torch.Tensor, nrow: int | None = None) -> Image.Image:
        return image_grid(samples, nrow)


def full_table(storage: torch.Tensor, labels: torch.Tensor | None = None) -> Table:
    """A table whose item i is storage[i] (no unreadable items)."""
    n = storage.shape[0]
    return Table(storage, torch.arange(n), torch.zeros(n, dtype=torch.bool), labels)


def check_labels(labels: torch.Tensor, classes: list[str], where: str) -> torch.Tensor:
    """`labels` as int64, refused (naming `where`) unless every one is in [0, len(classes))."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    bad = (labels < 0) | (labels >= len(classes))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise UserError(f"{where}: label {int(labels[i])} of item {i} is out of range: labels "
                        f"are class indices from 0 to {len(classes) - 1} ({len(classes)} "
                        "classes).")
    return labels
