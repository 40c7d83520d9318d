"""Decoding one image file into the uint8 (C, res, res) tensor training sees.

Every reader (folder, LMDB, torchvision, `ganqp prepare`) goes through `square_resize`, so a
prepared data set holds exactly the pixels the folder would have produced.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganqp_cli.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Bump when the pixels square_resize produces change: prepared data sets record it and are
# refused by a ganqp that would crop or resize differently.
RESIZE_METHOD = "centre-square-crop+PIL-LANCZOS+JPEG-draft+16bit-round/v1"

# Modes holding more than 8 bits per pixel (PNG 16-bit grayscale opens as I;16; older Pillow
# versions and some writers give I). PIL's own convert("L") clips these at 255.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

# What PIL raises for a file it cannot decode: a wrong or truncated header, bad compressed
# data, a file that is not an image, or one over its decompression-bomb limit.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError)


class Unreadable(UserError):
    """An image that cannot be decoded; `item` names it (a path, an LMDB key). Constructible
    from the message alone, as a DataLoader re-raises a worker's exception."""

    def __init__(self, item: str, reason: str | None = None) -> None:
        self.item, self.reason = item, reason
        if reason is None:  # re-raised by a DataLoader: keep the worker's message only
            found = re.findall(r"Unreadable: (.*)", item) if "Original Traceback" in item else []
            super().__init__(found[-1].strip() if found else item)
            return
        super().__init__(f"cannot read image {item}: {reason}. Remove or replace the file, or "
                         "set data.on_error=skip to train on the others (each unreadable image "
                         "is replaced by the next readable one).")


def to_8bit(img: Image.Image, channels: int) -> Image.Image:
    """`img` as 8-bit L (channels=1) or RGB (channels=3).

    16-bit grayscale is scaled to 8 bits, round(v / 257) (65535 -> 255), not clipped; alpha is
    dropped; palette, CMYK, 1-bit and gray+alpha images go through PIL's own conversion."""
    if img.mode in WIDE_MODES:
        arr = np.asarray(img).astype(np.int64).clip(0, 65535)
        img = Image.fromarray(((arr + 128) // 257).astype(np.uint8))
    return img.convert("RGB" if channels == 3 else "L")


def square_resize(img: Image.Image, res: int, channels: int, draft: bool = True
                  ) -> torch.Tensor:
    """Centre-crop to a square, resize with antialiasing, return uint8 (C, res, res).

    `draft` lets a large JPEG decode at a reduced size (a power-of-two scale that keeps the
    short side >= res): several times faster, and within a few levels of a full decode."""
    if draft:
        img.draft("RGB" if channels == 3 else "L", (res, res))
    img = to_8bit(img, channels)
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


def _decode(source: str | os.PathLike | io.BytesIO, item: str, res: int, channels: int
            ) -> torch.Tensor:
    try:
        with Image.open(source) as img:
            return square_resize(img, res, channels)
    except Image.DecompressionBombError as err:
        raise Unreadable(item, f"{err} (PIL refuses images this large as a possible "
                               "decompression bomb; shrink the file)") from None
    except DECODE_ERRORS as err:
        raise Unreadable(item, str(err) or type(err).__name__) from None


def read_image(path: str | os.PathLike, res: int, channels: int) -> torch.Tensor:
    """A file as training sees it; an undecodable file raises `Unreadable` naming it."""
    path = str(path)  # a numpy string would show as np.str_('...') in PIL's message
    return _decode(path, path, res, channels)


def decode_bytes(data: bytes, item: str, res: int, channels: int) -> torch.Tensor:
    """Encoded image bytes (e.g. an LMDB value) as training sees them."""
    return _decode(io.BytesIO(data), item, res, channels)


def list_images(root: str | os.PathLike, key: str = "data.root") -> list[Path]:
    """Every image file under `root`, recursively, in sorted order."""
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


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 as saved PNGs hold them (round to nearest)."""
    return ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


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
