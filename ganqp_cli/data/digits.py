"""`data=digits`: scikit-learn's bundled 8x8 handwritten digits, the offline default."""

from __future__ import annotations

import numpy as np
import torch

from ganqp_cli.data.base import ImageData, Table, full_table, split_indices


class Digits(ImageData):
    """scikit-learn's bundled 1,797 handwritten 8x8 digits (offline), upsampled to `res`."""

    name, channels, in_memory = "digits", 1, True
    classes = [str(k) for k in range(10)]

    def __init__(self, res: int, hflip: bool = False, name: str = "digits",
                 holdout: float = 0.0, split: str = "train", on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        from sklearn.datasets import load_digits
        bunch = load_digits()
        keep = split_indices(len(bunch.images), holdout, split).numpy()
        pix = bunch.images.astype(np.float32)[keep] / 16.0  # (N, 8, 8) in [0, 1]
        self._labels = torch.from_numpy(bunch.target[keep].astype(np.int64))
        x = torch.from_numpy(pix)[:, None]
        x = torch.nn.functional.interpolate(x, size=(res, res), mode="bicubic",
                                            align_corners=False, antialias=res < 8)
        self.tensor = (x.clamp(0, 1) * 255).round().to(torch.uint8)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def read(self, index: int) -> torch.Tensor:
        return self.tensor[index]

    def describe(self, index: int) -> str:
        return f"digits item {index}"

    def labels(self) -> torch.Tensor:
        return self._labels

    def table(self) -> Table:
        return full_table(self.tensor, self._labels)
