"""Benchmark the data paths against the physical floor measured in the same run.

For each resolution, images/s delivered as uint8 batches in host memory (what is then copied
to the GPU; flips run there) by
  (a) folder:   ganqp's Batches over a folder of large JPEGs (decode, crop, resize per draw),
                `w` DataLoader worker processes;
  (b) prepared: Batches over the same images after `ganqp prepare` (memory-mapped, gathered
                by index into a fresh buffer), `w` gather threads;
  (c) floor:    a plain copy of batches of the same bytes from an in-memory tensor into a
                fresh buffer, `w` threads;
for w = 1 and w = train.workers, and the ratios prepared/floor and prepared/folder.
It writes its own JPEGs (random smooth images plus noise) into a temporary folder.

    python scripts/bench_data.py                        # 128 JPEGs of 1024 px, 64/128/256 px
    python scripts/bench_data.py --images 400 --res 128 256 --seconds 3
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from ganqp_cli.data import Batches, ImageFolder, PreparedImages
from ganqp_cli.data.prepared import PIXELS_NAME, PreparedWriter
from ganqp_cli.prepare import write_all

CPU = torch.device("cpu")


def default_workers() -> int:
    conf = importlib.resources.files("ganqp_cli.conf").joinpath("train.yaml").read_text()
    return int(OmegaConf.create(conf).train.workers)


def write_jpegs(folder: Path, n: int, size: int) -> None:
    """n photo-like JPEGs: smooth colour fields plus grain (JPEG's cost depends on detail),
    made from a few precomputed bases by shifting them (numpy's sin and noise at 1024 px
    cost more than the encoding)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    bases = []
    for _ in range(4):
        f = rng.uniform(2, 12, 3)
        base = np.stack([np.sin(f[0] * xx), np.cos(f[1] * yy), np.sin(f[2] * (xx + yy))], -1)
        bases.append((127 + 90 * base + rng.normal(0, 12, base.shape)).clip(0, 255)
                     .astype(np.uint8))
    for i in range(n):
        arr = np.roll(bases[i % 4], (37 * i, 91 * i), axis=(0, 1)) + np.uint8(i % 64)
        Image.fromarray(arr).save(folder / f"{i:05d}.jpg", quality=90)


class Quiet:
    def update(self, done: int) -> None:
        pass


def prepare(src: ImageFolder, out: Path, res: int, workers: int) -> float:
    import ganqp_cli.prepare as prep
    t0 = time.perf_counter()
    writer = PreparedWriter(out, len(src), res, 3, {"bench": True})
    prep._SOURCE = src
    write_all(writer, workers, 16, True, Quiet())
    writer.finish()
    return len(src) / (time.perf_counter() - t0)


def rate(next_batch, batch: int, seconds: float, warmup: int = 2, min_batches: int = 3,
         windows: int = 3) -> float:
    """Images/s of `next_batch()` after `warmup` calls: the best of `windows` windows of at
    least `seconds` / `windows` and `min_batches` calls each (on a shared machine the best
    window is the one least disturbed by other work)."""
    for _ in range(warmup):
        next_batch()
    best = 0.0
    for _ in range(windows):
        n, t0 = 0, time.perf_counter()
        while n < min_batches or time.perf_counter() - t0 < seconds / windows:
            next_batch()
            n += 1
        best = max(best, n * batch / (time.perf_counter() - t0))
    return best


def floor_rate(pixels: torch.Tensor, batch: int, threads: int, seconds: float) -> float:
    """Copies of whole batches of the same bytes, from memory to a fresh buffer."""
    n_batches = pixels.shape[0] // batch

    def copy(j: int) -> None:
        out = torch.empty((batch, *pixels.shape[1:]), dtype=pixels.dtype)
        out.copy_(pixels[(j % n_batches) * batch:(j % n_batches + 1) * batch])

    if threads <= 1:
        j = iter(range(1 << 40))
        return rate(lambda: copy(next(j)), batch, seconds)
    pool = ThreadPoolExecutor(threads)
    step = iter(range(0, 1 << 40, threads))

    def round_() -> None:
        j = next(step)
        list(pool.map(copy, range(j, j + threads)))

    r = rate(round_, batch * threads, seconds)
    pool.shutdown()
    return r


def bench_res(root: Path, tmp: Path, res: int, a: argparse.Namespace) -> dict:
    folder = ImageFolder(str(root), res)
    out = tmp / f"prepared{res}"
    row = {"res": res, "prepare": prepare(folder, out, res, a.workers)}
    print(f"{res} px: prepared at {row['prepare']:.0f} img/s", flush=True)
    prepared = PreparedImages(str(out), res)
    pixels = torch.from_numpy(np.fromfile(out / PIXELS_NAME, np.uint8)).view(
        len(prepared), 3, res, res).clone()
    for w in (1, a.workers):
        b = Batches(folder, a.batch, 0, CPU, workers=w)  # decoding is slow: fewer batches
        row[f"folder{w}"] = rate(b.next_raw, a.batch, a.seconds, warmup=1, min_batches=1)
        del b
        b = Batches(prepared, a.batch, 0, CPU, workers=w, resident_bytes=0)
        row[f"prepared{w}"] = rate(b.next_raw, a.batch, a.seconds)
        b.close()
        row[f"floor{w}"] = floor_rate(pixels, a.batch, w, a.seconds)
        print(f"{res} px, {w} worker(s): folder {row[f'folder{w}']:.0f}, prepared "
              f"{row[f'prepared{w}']:.0f}, floor {row[f'floor{w}']:.0f} img/s", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=128, help="JPEGs to write")
    p.add_argument("--size", type=int, default=1024, help="their side in pixels")
    p.add_argument("--res", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="the many-worker setting (default: train.workers)")
    p.add_argument("--seconds", type=float, default=1.5, help="timed seconds per measurement")
    a = p.parse_args()
    if a.images < a.batch:
        p.error(f"--images ({a.images}) must be at least --batch ({a.batch})")
    torch.set_num_threads(1)  # one thread per worker, as in training's loader processes
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        tmp = Path(tmp)
        (tmp / "jpegs").mkdir()
        t0 = time.perf_counter()
        write_jpegs(tmp / "jpegs", a.images, a.size)
        print(f"wrote {a.images} JPEGs of {a.size} px in {time.perf_counter() - t0:.1f} s; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        rows = [bench_res(tmp / "jpegs", tmp, res, a) for res in a.res]
    w = a.workers
    print(f"\nimages/s, batch {a.batch}, uint8 batches in host memory "
          f"(load average {os.getloadavg()[0]:.1f} at the end)")
    head = (f"| res | prepare ({w} proc) | folder 1 | folder {w} | prepared 1 | prepared {w} "
            f"| floor 1 | floor {w} | prepared/floor 1 | prepared/floor {w} "
            f"| prepared/folder 1 | prepared/folder {w} |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(f"| {r['res']} | {r['prepare']:.0f} | {r['folder1']:.0f} | {r[f'folder{w}']:.0f} "
              f"| {r['prepared1']:.0f} | {r[f'prepared{w}']:.0f} | {r['floor1']:.0f} "
              f"| {r[f'floor{w}']:.0f} | {r['prepared1'] / r['floor1']:.2f} "
              f"| {r[f'prepared{w}'] / r[f'floor{w}']:.2f} "
              f"| {r['prepared1'] / r['folder1']:.0f}x "
              f"| {r[f'prepared{w}'] / r[f'folder{w}']:.0f}x |")


if __name__ == "__main__":
    main()
