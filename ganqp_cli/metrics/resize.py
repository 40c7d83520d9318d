"""Resizing images to an extractor's input size: `fid.resize=legacy|clean`.

legacy: pytorch-fid's (and so ganqp's FID until now): bilinear interpolation of the float
    image without antialiasing (F.interpolate, align_corners=False). Downsampling aliases,
    which shifts FID (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in
    GAN Evaluation").
clean: clean-fid's: each channel of the uint8 image as a float32 PIL image, bicubic
    resampling (PIL's filter widens with the scale factor, so downsampling is antialiased),
    clipped to [0, 255], not quantised again (cleanfid.resize.build_resizer("clean")).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MODES = ("legacy", "clean")


def legacy_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (N, C, H, W) -> (N, C, size, size), pytorch-fid's bilinear resize."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _clean_one(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 (C, H, W) image -> float32 (C, size, size) in [0, 255]."""
    chans = [np.asarray(Image.fromarray(c.astype(np.float32)).resize(
        (size, size), resample=Image.BICUBIC)) for c in image]
    return np.stack(chans).clip(0, 255)


def clean_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 (N, C, size, size) in [0, 255] on the CPU, as
    clean-fid resizes them. Images are resized in threads (PIL releases the GIL)."""
    arr = images.cpu().numpy()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(8, cpus or 1, arr.shape[0]))
    with ThreadPoolExecutor(threads) as pool:
        out = list(pool.map(lambda a: _clean_one(a, size), arr))
    return torch.from_numpy(np.stack(out))
