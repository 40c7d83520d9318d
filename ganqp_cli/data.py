"""Data sets and the deterministic, resumable batch stream.

Every data set maps an index to one uint8 image tensor (C, H, W) at `res` (or a float
point for `ring8`). The order of samples, and each sample's horizontal flip, are a pure
function of (seed, position in the stream), so a resumed run sees exactly the batches an
uninterrupted run would, whatever the number of loader workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Sampler

from ganqp_cli.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def square_resize(img: Image.Image, res: int, channels: int) -> torch.Tensor:
    """Centre-crop to a square, resize with antialiasing, return uint8 (C, res, res)."""
    img.draft("RGB" if channels == 3 else "L", (res, res))  # JPEG: decode at reduced size
    img = img.convert("RGB" if channels == 3 else "L")
    w, h = img.size
    s = min(w, h)
    if (w, h) != (s, s):
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if s != res:
        img = img.resize((res, res), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


# Fixed, not the run's seed: which items are held out is a property of the data config, so
# every run and `ganqp reconstruct` agree on it.
HOLDOUT_SEED = 1811_07296


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


class ImageData(torch.utils.data.Dataset):
    """Base: uint8 images scaled to [-1, 1] on the device; grids as previews."""

    name = "images"
    channels = 3
    in_memory = False

    def __init__(self, res: int, hflip: bool = False) -> None:
        self.res, self.hflip = res, hflip

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.res, self.res)

    def load(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, key: tuple[int, bool]) -> torch.Tensor:
        index, flip = key
        x = self.load(index)
        return x.flip(-1) if flip else x

    @staticmethod
    def to_model(batch: torch.Tensor) -> torch.Tensor:
        return batch.float().div_(127.5).sub_(1.0)

    def render(self, samples: torch.Tensor, nrow: int | None = None) -> Image.Image:
        return image_grid(samples, nrow)


class Digits(ImageData):
    """scikit-learn's bundled 1,797 handwritten 8x8 digits (offline), upsampled to `res`."""

    name, channels, in_memory = "digits", 1, True

    def __init__(self, res: int, hflip: bool = False, name: str = "digits",
                 holdout: float = 0.0, split: str = "train") -> None:
        super().__init__(res, hflip)
        from sklearn.datasets import load_digits
        pix = load_digits().images.astype(np.float32) / 16.0  # (N, 8, 8) in [0, 1]
        pix = pix[split_indices(len(pix), holdout, split).numpy()]
        x = torch.from_numpy(pix)[:, None]
        x = torch.nn.functional.interpolate(x, size=(res, res), mode="bicubic",
                                            align_corners=False, antialias=res < 8)
        self.tensor = (x.clamp(0, 1) * 255).round().to(torch.uint8)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def load(self, index: int) -> torch.Tensor:
        return self.tensor[index]


def list_images(root: str | os.PathLike, key: str = "data.root") -> list[Path]:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"{key}={root} is not a directory. Point it at a folder of images "
                        f"({', '.join(IMAGE_EXTS)}), e.g. `{key}=/path/to/images`, or set "
                        "GANQP_DATA to the folder that holds the data sets.")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise UserError(f"{key}={root} holds no images (searched recursively for "
                        f"{', '.join(IMAGE_EXTS)}).")
    return files


def read_image(path: Path, res: int, channels: int) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return square_resize(img, res, channels)
    except (OSError, ValueError, SyntaxError) as err:
        raise UserError(f"cannot read image {path}: {err}. Remove or replace the file.") from None


class ImageFolder(ImageData):
    """Any directory tree of png/jpg/jpeg/webp/bmp files (celebahq, ffhq, lsun-*, folder)."""

    def __init__(self, root: str, res: int, hflip: bool = False, name: str = "folder",
                 channels: int = 3, holdout: float = 0.0, split: str = "train") -> None:
        super().__init__(res, hflip)
        self.name, self.channels, self.root = name, channels, root
        files = list_images(root)
        self.files = [files[i] for i in split_indices(len(files), holdout, split).tolist()]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        return read_image(self.files[index], self.res, self.channels)


class Torchvision(ImageData):
    """CIFAR-10 or MNIST through torchvision; `download=true` fetches them once."""

    KINDS = {"cifar10": ("CIFAR10", 3), "mnist": ("MNIST", 1)}

    def __init__(self, root: str, res: int, name: str, hflip: bool = False,
                 download: bool = False) -> None:
        super().__init__(res, hflip)
        import torchvision
        cls_name, self.channels = self.KINDS[name]
        self.name = name
        try:
            self.base = getattr(torchvision.datasets, cls_name)(root, train=True,
                                                                download=download)
        except RuntimeError as err:
            raise UserError(f"data.root={root}: {name} not found there ({err}). Add "
                            f"data.download=true to download it, or point data.root at a copy."
                            ) from None

    def __len__(self) -> int:
        return len(self.base)

    def load(self, index: int) -> torch.Tensor:
        return square_resize(self.base[index][0], self.res, self.channels)


class Ring8(torch.utils.data.Dataset):
    """8 Gaussians (std 0.02) evenly on a circle of radius 2: the standard mode-coverage toy."""

    name, in_memory, modes_n = "ring8", True, 8

    def __init__(self, res: int = 0, n: int = 100_000, radius: float = 2.0, std: float = 0.02,
                 hflip: bool = False, name: str = "ring8", seed: int = 1234) -> None:
        g = torch.Generator().manual_seed(seed)
        angles = torch.arange(8) * (2 * math.pi / 8)
        self.modes = radius * torch.stack([angles.cos(), angles.sin()], 1)
        which = torch.randint(0, 8, (n,), generator=g)
        self.tensor = self.modes[which] + std * torch.randn(n, 2, generator=g)
        self.std, self.hflip, self.shape = std, False, (2,)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, key: tuple[int, bool]) -> torch.Tensor:
        return self.tensor[key[0]]

    @staticmethod
    def to_model(batch: torch.Tensor) -> torch.Tensor:
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


def image_grid(samples: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """[-1, 1] images (N, C, H, W) -> one PIL grid, 2 px padding, nearly square."""
    from torchvision.utils import make_grid
    n = samples.shape[0]
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    grid = make_grid(to_uint8(samples).cpu(), nrow=nrow, padding=2, pad_value=255)
    arr = grid.permute(1, 2, 0).numpy()
    if samples.shape[1] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 as saved PNGs hold them (round to nearest)."""
    return ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


class StreamSampler(Sampler):
    """Infinite stream of (index, flip) for one rank.

    The global stream concatenates one permutation per epoch (seeded by seed and epoch).
    Global batch j is stream[j*B:(j+1)*B]; rank r takes its slice r of each global batch, so
    any number of ranks together see what one process with the global batch sees.
    """

    def __init__(self, n: int, local_batch: int, seed: int, rank: int = 0, world: int = 1,
                 hflip: bool = False, start_batch: int = 0) -> None:
        self.n, self.b, self.seed, self.rank, self.world = n, local_batch, seed, rank, world
        self.hflip, self.start_batch = hflip, start_batch

    def _epoch(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
        perm = torch.randperm(self.n, generator=g)
        flips = torch.rand(self.n, generator=g) < 0.5 if self.hflip else torch.zeros(self.n,
                                                                                       dtype=bool)
        return perm, flips

    def batch_keys(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, flips) of this rank's slice of global batch j, computed vectorised (a
        per-item Python loop costs more than a small model's training step)."""
        pos = j * self.b * self.world + self.rank * self.b + torch.arange(self.b)
        epochs, ks = pos // self.n, pos % self.n
        idx = torch.empty(self.b, dtype=torch.long)
        flip = torch.empty(self.b, dtype=torch.bool)
        cache = getattr(self, "_cache", {})
        for e in epochs.unique().tolist():
            if e not in cache:
                cache = {k: v for k, v in cache.items() if k >= e - 1}  # keep two epochs
                cache[e] = self._epoch(e)
            perm, flips = cache[e]
            here = epochs == e
            idx[here], flip[here] = perm[ks[here]], flips[ks[here]]
        self._cache = cache
        return idx, flip

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        j = self.start_batch
        while True:
            idx, flip = self.batch_keys(j)
            yield from zip(idx.tolist(), flip.tolist(), strict=True)
            j += 1


class Batches:
    """Endless batches on the device as model inputs; `consumed` counts batches drawn."""

    def __init__(self, data: torch.utils.data.Dataset, local_batch: int, seed: int,
                 device: torch.device, rank: int = 0, world: int = 1, workers: int = 4,
                 start_batch: int = 0) -> None:
        self.data, self.device, self.consumed = data, device, start_batch
        self.sampler = StreamSampler(len(data), local_batch, seed, rank, world,
                                     getattr(data, "hflip", False), start_batch)
        if getattr(data, "in_memory", False):
            # Small tensors in memory: index them directly, no worker processes.
            self.it = self._gather(local_batch)
        else:
            loader = DataLoader(data, batch_size=local_batch, sampler=self.sampler,
                                num_workers=workers, pin_memory=device.type == "cuda",
                                persistent_workers=workers > 0,
                                prefetch_factor=4 if workers > 0 else None,
                                drop_last=True)
            self.it = iter(loader)

    def _gather(self, b: int) -> Iterator[torch.Tensor]:
        tensor = self.data.tensor.to(self.device)
        j = self.sampler.start_batch
        while True:
            idx, flip = self.sampler.batch_keys(j)
            j += 1
            batch = tensor[idx.to(self.device)]
            flip = flip.to(self.device)
            if flip.any():
                batch = torch.where(flip.view(-1, *[1] * (batch.ndim - 1)), batch.flip(-1), batch)
            yield batch

    def __iter__(self) -> Batches:
        return self

    def pop_stats(self) -> dict[str, float]:
        """Counts since the last call that the run logs (none kept by this stream yet)."""
        return {}

    def __next__(self) -> torch.Tensor:
        batch = next(self.it)
        self.consumed += 1
        return self.data.to_model(batch.to(self.device, non_blocking=True))
