"""`data=stacked-digits`: the Stacked MNIST protocol (Metz et al. 2017) on the bundled digits.

Each item stacks three digits drawn at random from scikit-learn's 1,797 as its R, G and B
channels, each resized like `data=digits`; the three-digit number RGB is its mode, one of
1,000. The draws are a function of `data.seed` alone (offline, deterministic), so every run,
`ganqp fid` and `ganqp reconstruct` with the same seed see the same items.
"""

from __future__ import annotations

import numpy as np
import torch

from ganqp_cli.data.base import ImageData, Table, full_table
from ganqp_cli.data.digits import Digits

N_MODES = 1000
PLACES = torch.tensor([100, 10, 1])  # R, G, B: the hundreds, tens and units of the mode


def digit_labels() -> torch.Tensor:
    """The class (0-9) of each of scikit-learn's digits, in `data=digits`' order."""
    from sklearn.datasets import load_digits
    return torch.from_numpy(load_digits().target.astype(np.int64))


def modes_of(channel_digits: torch.Tensor) -> torch.Tensor:
    """(N, 3) digits of the R, G, B channels -> the mode 100 R + 10 G + B of each item."""
    return (channel_digits.long() * PLACES.to(channel_digits.device)).sum(1)


class StackedDigits(ImageData):
    """`n` items of three random digits as R, G, B at `res`; 1,000 classes "000".."999"."""

    name, channels, in_memory = "stacked-digits", 3, True
    classes = [f"{i:03d}" for i in range(N_MODES)]

    def __init__(self, res: int, hflip: bool = False, name: str = "stacked-digits",
                 n: int = 25_600, seed: int = 0, on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        digits = Digits(res).tensor[:, 0]  # (1797, res, res) uint8
        picks = torch.randint(0, digits.shape[0], (n, 3),
                              generator=torch.Generator().manual_seed(seed))
        self.picks = picks  # the digits' indices per channel (for checks and describe)
        self.tensor = digits[picks]  # (n, 3, res, res)
        self._labels = modes_of(digit_labels()[picks])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def read(self, index: int) -> torch.Tensor:
        return self.tensor[index]

    def describe(self, index: int) -> str:
        r, g, b = self.picks[index].tolist()
        return f"stacked-digits item {index} (digits {r}, {g}, {b} as R, G, B)"

    def table(self) -> Table:
        return full_table(self.tensor)

    def labels(self) -> torch.Tensor:
        """Each item's mode, 100 R + 10 G + B: the index of its class in `classes`."""
        return self._labels

    def label(self, index: int) -> int:
        return int(self._labels[index])
