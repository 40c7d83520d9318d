"""The prepared data set format (`ganqp prepare`): pixels at the training resolution, read by
memory-mapping, so a draw costs one copy and no decoding.

A prepared data set is a directory:

    ganqp-prepared.json   the record: format, version, count, res, channels, layout, the
                          resize method, the SHA-256 of the pixel bytes, the source, and the
                          items that could not be read (with data.on_error=skip)
    pixels.u8             count x channels x res x res uint8, C order (item, channel, row,
                          column), no header: item i starts at byte i * channels * res * res
    labels.i64            with classes only: count int64 labels, little-endian, no header;
                          the record's "classes" names them (label k: classes[k])

The record is written last and the directory appears under its name only by a rename, so a
directory with a record is complete; an interrupted prepare leaves only `.NAME.partial`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganqp_cli.data.base import ImageData, Table, check_labels, replacement_rows, split_indices
from ganqp_cli.data.images import RESIZE_METHOD, Unreadable
from ganqp_cli.errors import UserError

FORMAT, VERSION = "ganqp-prepared", 1
META_NAME, PIXELS_NAME, PROGRESS_NAME = "ganqp-prepared.json", "pixels.u8", "progress.json"
LABELS_NAME = "labels.i64"


def is_prepared(root: str | os.PathLike) -> bool:
    return (Path(root).expanduser() / META_NAME).is_file()


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """The record of the prepared data set at `root`, checked against its pixel file."""
    path = Path(root).expanduser()
    try:
        meta = json.loads((path / META_NAME).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"data.root={root}: cannot read {META_NAME} ({err}); prepare the data "
                        "set again with `ganqp prepare`.") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UserError(f"data.root={root}: {META_NAME} is not a ganqp prepared data set of "
                        f"version {VERSION} (found {meta.get('format')!r} version "
                        f"{meta.get('version')!r}); prepare it again with this ganqp.")
    expected = meta["count"] * meta["channels"] * meta["res"] ** 2
    pixels = path / PIXELS_NAME
    size = pixels.stat().st_size if pixels.is_file() else -1
    if size != expected:
        raise UserError(f"data.root={root}: {PIXELS_NAME} holds {max(size, 0)} bytes, but the "
                        f"record says {meta['count']} images of {meta['channels']}x{meta['res']}"
                        f"x{meta['res']} ({expected} bytes): the set is damaged; prepare it "
                        "again.")
    if meta.get("classes") is not None:
        labels = path / LABELS_NAME
        size = labels.stat().st_size if labels.is_file() else -1
        if size != 8 * meta["count"]:
            raise UserError(f"data.root={root}: {LABELS_NAME} holds {max(size, 0)} bytes, but "
                            f"the record says {meta['count']} labels (8 bytes each): the set "
                            "is damaged; prepare it again.")
    return meta


def read_labels(root: str | os.PathLike) -> torch.Tensor:
    """All `count` labels of a prepared set with classes, in storage order."""
    arr = np.fromfile(Path(root).expanduser() / LABELS_NAME, dtype="<i8")
    return torch.from_numpy(arr.astype(np.int64))


def check_matches(meta: dict[str, Any], root: str, res: int, channels: int) -> None:
    """Refuse a prepared set that is not what this run would read from the source."""
    redo = (f"prepare it again at this setting: ganqp prepare data=... data.root=SOURCE "
            f"res={res} out=PATH")
    if meta["res"] != res:
        raise UserError(f"data.root={root} was prepared at res={meta['res']}, but this run uses "
                        f"res={res}. Run with res={meta['res']}, or {redo}.")
    if meta["channels"] != channels:
        raise UserError(f"data.root={root} holds {meta['channels']}-channel images, but this "
                        f"run reads {channels} channels (data.channels={channels}). Set "
                        f"data.channels={meta['channels']}, or {redo}.")
    if meta.get("resize") != RESIZE_METHOD:
        raise UserError(f"data.root={root} was cropped and resized by {meta.get('resize')!r}, "
                        f"but this ganqp uses {RESIZE_METHOD!r}, so its pixels would differ "
                        f"from the source's; {redo}.")


class PreparedImages(ImageData):
    """A prepared data set, memory-mapped: the OS page cache holds it once for every process
    on the machine, and a data set larger than memory is paged in as it is read."""

    in_memory = True

    def __init__(self, root: str, res: int, name: str = "folder", channels: int = 3,
                 hflip: bool = False, holdout: float = 0.0, split: str = "train",
                 on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        self.meta = read_meta(root)
        check_matches(self.meta, root, res, channels)
        self.name, self.channels, self.root = name, channels, str(root)
        self.sha256 = self.meta["sha256"]
        count = self.meta["count"]
        self.index = split_indices(count, holdout, split)
        bad_all = torch.zeros(count, dtype=torch.bool)
        self.unreadable = {int(u["index"]): u for u in self.meta.get("unreadable", [])}
        bad_all[list(self.unreadable)] = True
        self.bad = bad_all[self.index]
        if on_error == "error" and self.bad.any():
            first = self.unreadable[int(self.index[self.bad.nonzero()[0, 0]])]
            raise UserError(f"data.root={root} was prepared with data.on_error=skip and "
                            f"{int(self.bad.sum())} of its images are unreadable (e.g. "
                            f"{first['item']}: {first['error']}). Train with "
                            "data.on_error=skip, or fix the source and prepare it again.")
        self._storage, self._pid = None, -1
        self.classes = self.meta.get("classes")
        self._all_labels = None
        if self.classes is not None:
            self._all_labels = check_labels(read_labels(root), self.classes,
                                            f"data.root={root}: {LABELS_NAME}")
        else:
            self.unlabelled = "it was prepared from a data set without classes"

    @property
    def storage(self) -> torch.Tensor:
        """All `count` items as one (count, C, res, res) uint8 tensor over the file (mapped
        copy-on-write, so nothing can write to the file through it)."""
        if self._storage is None or self._pid != os.getpid():
            shape = (self.meta["count"], self.channels, self.res, self.res)
            arr = np.memmap(Path(self.root).expanduser() / PIXELS_NAME, np.uint8, "c",
                            shape=shape)
            self._storage, self._pid = torch.from_numpy(arr), os.getpid()
        return self._storage

    def __len__(self) -> int:
        return len(self.index)

    def read(self, index: int) -> torch.Tensor:
        row = int(self.index[index])
        if self.bad[index]:
            u = self.unreadable[row]
            raise Unreadable(u["item"], f"{u['error']} (recorded by ganqp prepare)")
        return self.storage[row].clone()

    def describe(self, index: int) -> str:
        row = int(self.index[index])
        item = self.unreadable.get(row, {}).get("item")
        return item or f"{self.root} image {row}"

    def labels(self) -> torch.Tensor:
        if self._all_labels is None:
            return super().labels()
        return self._all_labels[self.index]

    def table(self) -> Table:
        rows = self.index[replacement_rows(self.bad)]
        return Table(self.storage, rows, self.bad.clone(), self._all_labels)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_storage"], state["_pid"] = None, -1
        return state


def partial_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PreparedWriter:
    """Appends items in order to `.OUT.partial/pixels.u8`; `finish()` writes the record and
    renames the directory to OUT. A `progress.json` (written only after the pixels it counts
    are on disk) lets the same prepare, run again, resume where an interrupted one stopped."""

    def __init__(self, out: Path, count: int, res: int, channels: int,
                 source: dict[str, Any], classes: list[str] | None = None,
                 labels: np.ndarray | None = None) -> None:
        self.out, self.tmp = out, partial_dir(out)
        self.classes, self.labels = classes, labels
        self.count, self.res, self.channels, self.source = count, res, channels, source
        self.item_bytes = channels * res * res
        self.key = {"count": count, "res": res, "channels": channels, "source": source,
                    "resize": RESIZE_METHOD}
        self.hash = hashlib.sha256()
        self.unreadable: list[dict[str, Any]] = []
        self.done = self._resume()
        self.file = open(self.tmp / PIXELS_NAME, "r+b")  # noqa: SIM115
        self.file.seek(self.done * self.item_bytes)
        self.t_sync = time.time()

    def _resume(self) -> int:
        """Items already written by an interrupted run of this same prepare (0: a fresh
        start). Their bytes are hashed again, not trusted from the progress record."""
        progress = self.tmp / PROGRESS_NAME
        if progress.is_file():
            try:
                state = json.loads(progress.read_text())
            except ValueError:
                state = {}
            if state.get("key") == self.key:
                done = int(state["done"])
                with open(self.tmp / PIXELS_NAME, "r+b") as f:
                    f.truncate(done * self.item_bytes)
                    for block in iter(lambda: f.read(1 << 24), b""):
                        self.hash.update(block)
                self.unreadable = state["unreadable"]
                return done
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        (self.tmp / PIXELS_NAME).touch()
        return 0

    def write(self, pixels: np.ndarray, unreadable: list[dict[str, Any]]) -> None:
        """The next len(pixels) items (uint8, (n, C, res, res)); `unreadable` lists those
        among them that could not be read (their pixels are zeros)."""
        data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        self.file.write(data)
        self.hash.update(data)
        self.unreadable += unreadable
        self.done += len(pixels)
        if time.time() - self.t_sync > 10 or self.done == self.count:
            self.checkpoint()

    def checkpoint(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        _write_json(self.tmp / PROGRESS_NAME, {"key": self.key, "done": self.done,
                                               "unreadable": self.unreadable})
        self.t_sync = time.time()

    def finish(self, overwrite: bool = False) -> dict[str, Any]:
        self.checkpoint()
        self.file.close()
        meta = {"format": FORMAT, "version": VERSION, "count": self.count, "res": self.res,
                "channels": self.channels, "dtype": "uint8", "layout": "NCHW",
                "pixels": PIXELS_NAME, "resize": RESIZE_METHOD,
                "sha256": self.hash.hexdigest(), "source": self.source,
                "unreadable": self.unreadable, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "classes": self.classes}
        if self.classes is not None:  # before the record: a set with a record is complete
            with open(self.tmp / LABELS_NAME, "wb") as f:
                f.write(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
                f.flush()
                os.fsync(f.fileno())
        _write_json(self.tmp / META_NAME, meta)
        (self.tmp / PROGRESS_NAME).unlink()
        old = self.out.parent / f".{self.out.name}.old"
        if self.out.exists():
            if not overwrite:  # appeared while we worked
                raise UserError(f"out={self.out} appeared while preparing; the result is in "
                                f"{self.tmp}. Remove {self.out} and rename it, or pass "
                                "overwrite=true.")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)
        return meta

    def close(self) -> None:
        """Stop without finishing (an error or an interruption): keep what is written."""
        if not self.file.closed:
            self.checkpoint()
            self.file.close()


def content_hash(root: str | os.PathLike) -> str:
    """SHA-256 of a prepared set's pixel bytes, computed afresh (to verify the record)."""
    h = hashlib.sha256()
    with open(Path(root).expanduser() / PIXELS_NAME, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()
