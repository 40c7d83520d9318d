"""`ganqp prepare`: write a prepared data set (ganqp_cli.data.prepared) from any image data
set ganqp reads, with the pixels training would produce, bit for bit.

Decoding runs in `workers` processes, `chunk` images per task, at most 2 x workers tasks in
flight; results are written in index order as they complete, so memory holds a few chunks,
never the data set. The output appears under its name only when complete.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import multiprocessing as mp
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ganqp_cli import checks
from ganqp_cli.config import check_missing, make
from ganqp_cli.data import Unreadable, is_prepared, root_kind, validate_data
from ganqp_cli.data.base import ImageData
from ganqp_cli.data.prepared import PreparedWriter, partial_dir
from ganqp_cli.errors import UserError

_SOURCE: ImageData | None = None  # the data set a decoding process reads (inherited by fork)


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)  # one decoding process per core; no nested thread pools


def decode_range(lo: int, hi: int, stop_on_error: bool) -> tuple[np.ndarray, list[dict]]:
    """Items [lo, hi) of the source as uint8 (n, C, res, res); unreadable items are zeros
    and listed (or, with stop_on_error, raise)."""
    src = _SOURCE
    out = np.zeros((hi - lo, *src.shape), dtype=np.uint8)
    bad = []
    for i in range(lo, hi):
        try:
            out[i - lo] = src.read(i).numpy()
        except Unreadable as err:
            if stop_on_error:
                raise
            bad.append({"index": i, "item": err.item, "error": err.reason})
    return out, bad


def check_settings(cfg: DictConfig) -> Path:
    """Every key checked before anything is read or written; returns the output path."""
    if cfg.get("data") is None:
        group = importlib.resources.files("ganqp_cli.conf") / "data"
        options = sorted(p.name[:-5] for p in group.iterdir()
                         if p.name.endswith(".yaml") and p.name != "ring8.yaml")
        raise UserError(f"data= is required: the image data set to prepare, one of "
                        f"{', '.join(options)} (e.g. data=folder data.root=/data/images).")
    check_missing(cfg, {"data.root": "the data set to prepare, e.g. data.root=/data/celebahq",
                        "res": "the resolution the runs will train at, e.g. res=128",
                        "out": "the directory to write, e.g. out=/fast/celebahq128"})
    validate_data(cfg.data)
    res = cfg.res
    checks.require(checks.is_int(res) and 16 <= res <= 1024 and res & (res - 1) == 0, "res",
                   res, "a power of two from 16 to 1024 (the resolutions ganqp trains at)")
    checks.whole("workers", cfg.workers, 0)
    checks.whole("chunk", cfg.chunk, 1)
    checks.boolean("overwrite", cfg.overwrite)
    out = checks.writable_dir("out", cfg.out)
    if out.exists():
        if not is_prepared(out):
            raise UserError(f"out={cfg.out} exists and is not a prepared data set; choose a "
                            "path that does not exist (ganqp prepare never replaces other "
                            "files).")
        if not cfg.overwrite:
            raise UserError(f"out={cfg.out} already holds a prepared data set; pass "
                            "overwrite=true to replace it, or choose another path.")
    root = cfg.data.get("root")
    if root is not None and root_kind(str(root)) == "prepared":
        raise UserError(f"data.root={root} is already a prepared data set; prepare from its "
                        "source (the folder, LMDB or torchvision data it was made from).")
    return out


def source_record(cfg: DictConfig, src: ImageData) -> dict[str, Any]:
    """What the set was made from; the hash of the item names tells a resumed prepare it
    reads the same items."""
    names = hashlib.sha256()
    for i in range(len(src)):
        names.update(src.describe(i).encode() + b"\n")
    root = cfg.data.get("root")
    return {"data": str(cfg.data.get("name", "")), "target": str(cfg.data.get("_target_")),
            "root": str(Path(str(root)).expanduser().resolve()) if root is not None else None,
            "kind": root_kind(str(root)) if root is not None else "bundled",
            "items": len(src), "items_sha256": names.hexdigest()}


def open_source(cfg: DictConfig) -> ImageData:
    node = cfg.data.copy()
    for key, value in (("holdout", 0.0), ("split", "train")):  # every item: the split is
        if key in node:                                         # applied when it is read
            node[key] = value
    src = make(node, "data", res=int(cfg.res))
    if not getattr(src, "is_image", False) or not hasattr(src, "read"):
        raise UserError(f"data={cfg.data.get('name')} holds points, not images; ganqp prepare "
                        "writes image data sets.")
    return src


class Progress:
    """A rich bar on a terminal; otherwise a plain line every 10% (or 30 s)."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.t0, self.start = total, time.time(), done
        self.last_line, self.bar = time.time(), None
        if sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar
            self.bar = Bar(TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
            self.task = self.bar.add_task("prepare", total=total, completed=done)
            self.bar.start()
        self.next_pct = 10 * (100 * done // total // 10 + 1)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            return
        pct = 100 * done // self.total
        if pct >= self.next_pct or time.time() - self.last_line > 30 or done == self.total:
            rate = (done - self.start) / max(time.time() - self.t0, 1e-9)
            print(f"prepare: {done}/{self.total} images ({pct}%), {rate:.0f} img/s",
                  flush=True)
            self.next_pct, self.last_line = 10 * (pct // 10 + 1), time.time()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _chunks(done: int, n: int, chunk: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + chunk, n)) for lo in range(done, n, chunk)]


def write_all(writer: PreparedWriter, workers: int, chunk: int, stop_on_error: bool,
              progress: Progress) -> None:
    """Decode the items the writer still lacks and append them, in order."""
    tasks = deque(_chunks(writer.done, writer.count, chunk))
    if workers == 0:
        for lo, hi in tasks:
            writer.write(*decode_range(lo, hi, stop_on_error))
            progress.update(writer.done)
        return
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                               initializer=_init_worker)
    ahead: deque[Future] = deque()
    try:
        while tasks or ahead:
            while tasks and len(ahead) < 2 * workers:
                ahead.append(pool.submit(decode_range, *tasks.popleft(), stop_on_error))
            writer.write(*ahead.popleft().result())
            progress.update(writer.done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prepare_command(cfg: DictConfig) -> dict[str, Any]:
    global _SOURCE
    out = check_settings(cfg)
    src = open_source(cfg)
    channels, res, n = src.shape[0], int(cfg.res), len(src)
    classes = src.classes  # a label file is read (and refused if bad) before anything is written
    labels = src.labels().numpy() if classes is not None else None
    writer = PreparedWriter(out, n, res, channels, source_record(cfg, src), classes, labels)
    if writer.done:
        print(f"prepare: resuming {partial_dir(out)} at image {writer.done} of {n}")
    print(f"prepare: {n} images of data={cfg.data.get('name')} -> {out} at {res} px, "
          f"{channels} channel(s), {n * channels * res * res / 2**30:.2f} GiB, "
          + (f"{len(classes)} classes" if classes is not None
             else f"no labels ({src.unlabelled})"))
    _SOURCE = src
    progress, t0 = Progress(n, writer.done), time.time()
    try:
        write_all(writer, int(cfg.workers), int(cfg.chunk), cfg.data.get("on_error") != "skip",
                  progress)
    except (KeyboardInterrupt, UserError) as err:
        progress.close()
        writer.close()
        note = (f" (prepare stopped at image {writer.done} of {n}; what is written is kept "
                f"in {partial_dir(out)} and the same command resumes from there)")
        if isinstance(err, UserError):
            raise UserError(f"{err}{note}") from None
        print(f"prepare: interrupted{note}", file=sys.stderr)
        sys.exit(130)
    finally:
        _SOURCE = None
    progress.close()
    meta = writer.finish(overwrite=bool(cfg.overwrite))
    dt = time.time() - t0
    skipped = len(meta["unreadable"])
    print(f"prepared {n} images in {dt:.1f} s ({n / max(dt, 1e-9):.0f} img/s) -> {out}"
          + (f"; {skipped} unreadable (zeros, replaced when read with data.on_error=skip): "
             + ", ".join(u["item"] for u in meta["unreadable"][:5]) if skipped else "")
          + f"\nsha256 {meta['sha256']}\ntrain with: data.root={out} res={res}")
    return {"count": n, "res": res, "channels": channels, "unreadable": skipped,
            "sha256": meta["sha256"], "out": str(out), "classes": classes}
