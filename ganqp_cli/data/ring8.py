"""`data=ring8`: 8 Gaussians on a circle, the standard mode-coverage toy (points, not images)."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw

from ganqp_cli.data.base import Table, full_table


class Ring8(torch.utils.data.Dataset):
    """8 Gaussians (std 0.02) evenly on a circle of radius 2: the standard mode-coverage toy.
    Its classes are the modes: label k is the Gaussian at angle k * 45 degrees."""

    name, in_memory, is_image = "ring8", True, False
    root, on_error, res = None, "error", 0

    def __init__(self, res: int = 0, n: int = 100_000, radius: float = 2.0, std: float = 0.02,
                 hflip: bool = False, name: str = "ring8", seed: int = 1234) -> None:
        g = torch.Generator().manual_seed(seed)
        angles = torch.arange(8) * (2 * math.pi / 8)
        self.modes = radius * torch.stack([angles.cos(), angles.sin()], 1)
        which = torch.randint(0, 8, (n,), generator=g)
        self.tensor = self.modes[which] + std * torch.randn(n, 2, generator=g)
        self._labels = which.to(torch.int64)
        self.classes = [str(k) for k in range(8)]
        # a point has no left and right: hflip is always off
        self.std, self.hflip, self.shape = std, False, (2,)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def load(self, index: int) -> torch.Tensor:
        return self.tensor[index]

    def fetch(self, index: int) -> tuple[torch.Tensor, int]:
        return self.tensor[index], index

    def describe(self, index: int) -> str:
        return f"ring8 point {index}"

    def why(self, index: int) -> str:
        return self.describe(index)

    def __getitem__(self, key: tuple[int, bool]) -> torch.Tensor:
        return self.tensor[key[0]]

    def labels(self) -> torch.Tensor:
        return self._labels

    def label(self, index: int) -> int:
        return int(self._labels[index])

    def table(self) -> Table:
        return full_table(self.tensor, self._labels)

    def to_model(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float()

    def coverage(self, points: torch.Tensor, min_count: int = 1) -> tuple[int, float]:
        """(modes hit, fraction of points within 3 std of their nearest mode). A mode is hit
        when at least `min_count` points lie within 3 std of it (PacGAN and VEEGAN count a
        mode as captured with 20 of 2,500 samples there)."""
        dist = torch.cdist(points.float().cpu(), self.modes)
        nearest, which = dist.min(1)
        good = nearest <= 3 * self.std
        counts = torch.bincount(which[good], minlength=len(self.modes))
        return int((counts >= min_count).sum()), float(good.float().mean())

    def render(self, samples: torch.Tensor, nrow: int | None = None) -> Image.Image:
        size, scale = 512, 512 / 6.0
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        for x, y in self.modes.tolist():
            cx, cy = size / 2 + x * scale, size / 2 - y * scale
            draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), outline=(220, 0, 0), width=2)
        for x, y in samples.float().cpu().tolist():
            cx, cy = size / 2 + x * scale, size / 2 - y * scale
            draw.point((cx, cy), fill=(0, 0, 160))
        return img
