"""Benchmark the data paths against the physical floor measured in the same run.

For each resolution, images/s delivered as uint8 batches in host memory (what is then copied
to the GPU; flips run there) by
  (a) folder:   ganqp's Batches over a folder of large JPEGs (decode, crop, resize per draw),
                `w` DataLoader worker processes, started per window (its first `w` batches
                untimed) and stopped after it, so no decoding runs while another side is timed;
  (b) prepared: Batches over the same images after `ganqp prepare` (memory-mapped, gathered
                by index into a fresh buffer), `w` gather threads;
  (c) floor:    a plain copy of batches of the same bytes from an in-memory tensor into a
                fresh buffer, delivered as (b) delivers: `w` threads, 2w batches ahead;
for w = train.workers (at most one per core: more share the cores and time the scheduler;
--workers 1 2 adds rows). --pairs rounds; in each, every row times prepared and floor in
alternated 10-ms sub-windows (paired.alternated_rates) until each has --seconds, giving a
pair of prepared / floor, and a folder window beside that block (before it in one round,
after it in the next), giving a pair of prepared / folder. Printed: each ratio's median,
min and max over the pairs, and the medians of the odd and the even pairs (a stability
check). The prepared side is bound by memory bandwidth and thread hand-over, the folder
side by decoding. Why sub-windows: here a side's speed wanders over tenths of seconds to
seconds; in one long window each side got a stretch of its own, and pairs of 0.25-s windows
scattered by a factor 1.5-3.2 (medians of two invocations up to 8% apart); sub-windows of
10 ms share the stretch between the sides.
It runs with glibc's allocator settings fixed (MALLOC below; it re-executes itself with them):
by default every gather thread gets an arena of its own and glibc moves its mmap and trim
thresholds as buffers come and go, so a fresh 12 MB batch buffer was sometimes recycled and
sometimes faulted in anew page by page (up to 100k minor faults in a 0.3-s window, each tens
of microseconds on a VM). On a GPU the batch buffers are pinned memory from CUDA's caching
host allocator, recycled without faults; these settings give the CPU the same, so what is
measured is the gather, not glibc's heuristics. Batches above 32 MB (512 px) are mapped
afresh on both sides regardless.
It writes its own JPEGs (random smooth images plus noise) into a temporary folder.

    python scripts/bench_data.py                        # 128 JPEGs of 1024 px, 64/128/256 px
    python scripts/bench_data.py --res 128 --workers 1 2 --pairs 50
"""

from __future__ import annotations

import argparse
import gc
import importlib.resources
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from ganqp_cli.data import Batches, ImageFolder, PreparedImages
from ganqp_cli.data.prepared import PIXELS_NAME, PreparedWriter
from ganqp_cli.prepare import write_all

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import Spread, alternated_rates, load_average  # noqa: E402

CPU = torch.device("cpu")
# One arena for all threads; buffers up to 32 MB (glibc's largest mmap threshold) from the
# heap, which is never trimmed below 4 GiB: a freed batch buffer is reused as it is.
MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
          "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def with_fixed_malloc() -> None:
    """Re-execute this script with MALLOC in its environment, unless it is there already
    (glibc reads it once, at start)."""
    if all(os.environ.get(k) == v for k, v in MALLOC.items()):
        return
    os.environ.update(MALLOC)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv])


def default_workers() -> int:
    """train.workers, at most one per core."""
    conf = importlib.resources.files("ganqp_cli.conf").joinpath("train.yaml").read_text()
    return min(int(OmegaConf.create(conf).train.workers), os.cpu_count() or 1)


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


class Side:
    """One side of a comparison: `step()` delivers `per_step` images; `window()` times one
    window of at least `seconds` and `min_steps` steps and returns its images/s."""

    def __init__(self, step, per_step: int, min_steps: int = 3) -> None:
        self.step, self.per_step, self.min_steps = step, per_step, min_steps

    def window(self, seconds: float) -> float:
        n, t0 = 0, time.perf_counter()
        while n < self.min_steps or time.perf_counter() - t0 < seconds:
            self.step()
            n += 1
        return n * self.per_step / (time.perf_counter() - t0)


class Floor:
    """Copies of whole batches of the same bytes, from memory to a fresh buffer, delivered
    as the prepared side delivers its gathers: `threads` threads, up to 2 x threads batches
    ahead, handed over in order. A floor copied in the caller (as it once was) left the
    thread hand-over out of one side only: with one worker, prepared / floor then moved by
    13% between two invocations, the VM's thread wake-ups timed on one side."""

    def __init__(self, pixels: torch.Tensor, batch: int, threads: int) -> None:
        self.pixels, self.batch = pixels, batch
        self.n_batches, self.j = pixels.shape[0] // batch, 0
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="floor")
        self.ahead: deque[Future] = deque()
        self.depth = 2 * threads

    def copy(self, j: int) -> torch.Tensor:
        k = j % self.n_batches
        out = torch.empty((self.batch, *self.pixels.shape[1:]), dtype=self.pixels.dtype)
        return out.copy_(self.pixels[k * self.batch:(k + 1) * self.batch])

    def step(self) -> torch.Tensor:
        while len(self.ahead) < self.depth:
            self.ahead.append(self.pool.submit(self.copy, self.j))
            self.j += 1
        return self.ahead.popleft().result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class FolderWindow:
    """The folder side's window, with a loader of its own: its `w` worker processes start,
    one round of `w` batches is drawn untimed (every worker busy from then on), whole rounds
    are timed (workers deliver in lockstep: a window cut mid-round would miscount by up to
    a round), and the loader stops. A loader kept between windows would go on decoding into
    its prefetch queue (4 batches per worker) while the other side is timed, taking its CPU,
    and hand the next window finished batches: ratios moved by 50% between pairs so."""

    def __init__(self, folder: ImageFolder, batch: int, workers: int) -> None:
        self.folder, self.batch, self.workers = folder, batch, workers
        self.loader: Batches | None = None

    def round(self) -> None:
        for _ in range(self.workers):
            self.loader.next_raw()

    def window(self, seconds: float) -> float:
        self.loader = Batches(self.folder, self.batch, 0, CPU, workers=self.workers)
        try:
            self.round()
            return Side(self.round, self.batch * self.workers, 2).window(seconds)
        finally:
            self.loader.close()
            self.loader = None  # its iterator stops the worker processes when collected
            gc.collect()


def sides_of(root: Path, tmp: Path, res: int, a: argparse.Namespace) -> list[dict]:
    """Prepare the JPEGs at `res`; for each of --workers, the three sides and what closes
    them. One untimed block of prepared and floor first: it grows the heap to its steady
    size (thousands of page faults), after which a window faults no more."""
    folder = ImageFolder(str(root), res)
    out = tmp / f"prepared{res}"
    print(f"{res} px: prepared at {prepare(folder, out, res, max(a.workers)):.0f} img/s "
          f"({max(a.workers)} processes)", flush=True)
    prepared = PreparedImages(str(out), res)
    pixels = torch.from_numpy(np.fromfile(out / PIXELS_NAME, np.uint8)).view(
        len(prepared), 3, res, res).clone()
    rows = []
    for w in a.workers:
        pb = Batches(prepared, a.batch, 0, CPU, workers=w, resident_bytes=0)
        floor = Floor(pixels, a.batch, w)
        row = {"res": res, "w": w, "steps": (pb.next_raw, floor.step),
               "folder": FolderWindow(folder, a.batch, w), "close": (pb.close, floor.close),
               **{k: [] for k in ("prepared", "floor", "folder_rates", "vs_floor",
                                  "vs_folder")}}
        block(row, a, b_first=False)
        rows.append(row)
    return rows


def block(row: dict, a: argparse.Namespace, b_first: bool) -> tuple[float, float]:
    """Prepared and floor images/s in alternated 10-ms sub-windows, --seconds each; every
    sub-window begins with 4w untimed steps (2w batches each side gathers ahead, then 2w
    that wait on gathers running beside the other side's last ones)."""
    return alternated_rates(row["steps"], a.batch, a.seconds, a.sub, 4 * row["w"], b_first)


def measure(rows: list[dict], a: argparse.Namespace) -> None:
    """--pairs rounds; in each, every row times a block of prepared and floor
    (prepared / floor) and a folder window (prepared / folder, against the block's prepared
    rate), in alternating order. Pair k of every row runs before pair k + 1 of any: the
    host's memory bandwidth changes over minutes, the prepared side (memory-bound) with it
    more than the folder side (decoding)."""
    t0 = time.perf_counter()
    for k in range(a.pairs):
        for i, r in enumerate(rows):
            folder_first = (k + i) % 2 == 1
            if folder_first:
                fo = r["folder"].window(a.folder_seconds)
            p, f = block(r, a, b_first=k % 2 == 1)
            if not folder_first:
                fo = r["folder"].window(a.folder_seconds)
            for key, v in (("prepared", p), ("floor", f), ("folder_rates", fo),
                           ("vs_floor", p / f), ("vs_folder", p / fo)):
                r[key].append(v)
        if (k + 1) % 10 == 0 or k + 1 == a.pairs:
            print(f"  round {k + 1}/{a.pairs}, {time.perf_counter() - t0:.0f} s", flush=True)
    for r in rows:
        r["vs_floor"], r["vs_folder"] = Spread.of(r["vs_floor"]), Spread.of(r["vs_folder"])
        r["folder"] = statistics.median(r.pop("folder_rates"))
        r["prepared"], r["floor"] = (statistics.median(r["prepared"]),
                                     statistics.median(r["floor"]))
        for close in r["close"]:
            close()


def spread_cell(s: Spread, fmt: str) -> str:
    return f"{s.median:{fmt}} ({s.low:{fmt}}-{s.high:{fmt}})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=128, help="JPEGs to write")
    p.add_argument("--size", type=int, default=1024, help="their side in pixels")
    p.add_argument("--res", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[default_workers()],
                   help="gather threads / decoding processes (default: train.workers, at "
                        "most the cores; e.g. --workers 1 2)")
    p.add_argument("--seconds", type=float, default=0.5,
                   help="timed seconds of prepared and of floor in each pair")
    p.add_argument("--sub", type=float, default=0.01,
                   help="seconds per sub-window of prepared and floor (they alternate)")
    p.add_argument("--folder-seconds", type=float, default=0.25,
                   help="least timed seconds per folder window (and 2 rounds of batches)")
    p.add_argument("--pairs", type=int, default=200, help="rounds: pairs per ratio")
    a = p.parse_args()
    if a.images < a.batch:
        p.error(f"--images ({a.images}) must be at least --batch ({a.batch})")
    if min(a.workers) < 1 or min(a.seconds, a.sub, a.folder_seconds) <= 0 or a.pairs < 1:
        p.error("--workers and --pairs must be at least 1, --seconds, --sub and "
                "--folder-seconds above 0")
    with_fixed_malloc()
    torch.set_num_threads(1)  # one thread per worker, as in training's loader processes
    print(f"start: {load_average()}; " + " ".join(f"{k}={v}" for k, v in MALLOC.items()))
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        tmp = Path(tmp)
        (tmp / "jpegs").mkdir()
        t0 = time.perf_counter()
        write_jpegs(tmp / "jpegs", a.images, a.size)
        print(f"wrote {a.images} JPEGs of {a.size} px in {time.perf_counter() - t0:.1f} s")
        rows = [row for res in a.res for row in sides_of(tmp / "jpegs", tmp, res, a)]
        measure(rows, a)
    for r in rows:
        tag = f"{r['res']} px, {r['w']} worker(s):"
        print(f"{tag} {r['vs_floor'].line('prepared / floor', '.2f')}")
        print(f"{tag} {r['vs_folder'].line('prepared / folder', '.0f')}")
    print(f"\nimages/s (medians over the windows), batch {a.batch}, uint8 batches in host "
          f"memory; ratios: median (min-max) of {a.pairs} alternated pairs")
    head = ("| res | workers | folder | prepared | floor | prepared / floor "
            "| prepared / folder |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(f"| {r['res']} | {r['w']} | {r['folder']:.0f} | {r['prepared']:.0f} "
              f"| {r['floor']:.0f} | {spread_cell(r['vs_floor'], '.2f')} "
              f"| {spread_cell(r['vs_folder'], '.0f')} |")
    print(f"end: {load_average()}; {time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
