"""The deterministic, resumable batch stream.

The order of items, and each item's horizontal flip, are a pure function of (seed, position
in the stream), so a resumed run sees exactly the batches an uninterrupted run would,
whatever the number of loader workers or the form of the data (folder, LMDB, prepared).
With `labels=True` each batch's labels come with it, gathered by the same indices (the label
of the item actually read, when an unreadable one was replaced), so they resume alike.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ganqp_cli.data.base import DataSet

# An in-memory data set up to this size is copied to the device once and gathered there in
# the main thread; larger ones (prepared sets are memory-mapped) are gathered on the host,
# into pinned memory, by `workers` threads ahead of use.
DEVICE_RESIDENT_BYTES = 1 << 30


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
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _epoch(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
        perm = torch.randperm(self.n, generator=g)
        flips = torch.rand(self.n, generator=g) < 0.5 if self.hflip else torch.zeros(self.n,
                                                                                       dtype=bool)
        return perm, flips

    def batch_keys(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, flips) of this rank's slice of global batch j, computed vectorised (a
        per-item Python loop costs more than a small model's training step)."""
        start = j * self.b * self.world + self.rank * self.b
        e0, e1 = start // self.n, (start + self.b - 1) // self.n
        if e0 == e1:  # the usual case: one epoch, a contiguous slice of its permutation
            perm, flips = self._epoch_cached(e0)
            k = start - e0 * self.n
            return perm[k:k + self.b], flips[k:k + self.b]
        pos = start + torch.arange(self.b)
        epochs, ks = pos // self.n - e0, pos % self.n
        # Gathers, not boolean masks (a mask's size is data: training.syncs counts it).
        perms, flips = zip(*(self._epoch_cached(e) for e in range(e0, e1 + 1)), strict=True)
        return torch.stack(perms)[epochs, ks], torch.stack(flips)[epochs, ks]

    def _epoch_cached(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._cache
        if e not in cache:
            cache = {k: v for k, v in cache.items() if k >= e - 1}  # keep two epochs
            cache[e] = self._epoch(e)
            self._cache = cache  # one assignment: prefetch threads may call this concurrently
        return cache[e]

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        j = self.start_batch
        while True:
            idx, flip = self.batch_keys(j)
            yield from zip(idx.tolist(), flip.tolist(), strict=True)
            j += 1


class _Keyed(Dataset):
    """What a DataLoader worker returns for a key: the item unflipped (flips happen on the
    device), its flip, the index drawn when it was unreadable and replaced (else -1), and the
    label of the item read (-1 without `labels`, a tensor read in the main process)."""

    def __init__(self, data: DataSet, labels: torch.Tensor | None = None) -> None:
        self.data, self.labels = data, labels

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, bool]) -> tuple[torch.Tensor, bool, int, int]:
        index, flip = key
        x, got = self.data.fetch(index)
        label = int(self.labels[got]) if self.labels is not None else -1
        return x, flip, (index if got != index else -1), label


# (host batch, flips, replaced indices, labels or None)
Raw = tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor | None]


class Batches:
    """Endless batches on the device as model inputs; `consumed` counts batches drawn.

    In-memory data sets (digits, ring8, prepared sets) are gathered by index without worker
    processes; others are decoded by `workers` DataLoader processes. Either way the host
    never waits for the device: copies are pinned and non_blocking, flips run on the device.
    With `labels=True`, `labels` holds the labels (int64, on the device) of the batch last
    drawn; else it stays None.
    """

    def __init__(self, data: DataSet, local_batch: int, seed: int, device: torch.device,
                 rank: int = 0, world: int = 1, workers: int = 4, start_batch: int = 0,
                 log: Callable[[str], None] | None = None,
                 resident_bytes: int = DEVICE_RESIDENT_BYTES, labels: bool = False,
                 memory_format: torch.memory_format | None = None) -> None:
        self.data, self.device, self.consumed, self.b = data, device, start_batch, local_batch
        self.labels: torch.Tensor | None = None
        self.with_labels = labels
        self.memory_format = memory_format  # train.channels_last (training.compiling)
        self.hflip = bool(data.hflip)
        self.sampler = StreamSampler(len(data), local_batch, seed, rank, world, self.hflip,
                                     start_batch)
        self.pin = device.type == "cuda"
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.skipped, self._logged = 0, set()
        self._pool: ThreadPoolExecutor | None = None
        self._resident: tuple[torch.Tensor, torch.Tensor] | None = None
        self._labels_dev: torch.Tensor | None = None
        if data.in_memory:
            self.table = data.table()
            self._any_replaced = bool(self.table.replaced.any())
            n = self.table.rows.numel()
            self._identity = n == self.table.storage.shape[0] and torch.equal(
                self.table.rows, torch.arange(n))
            if labels and self.table.labels is None:
                if not self._identity:  # item labels are storage labels only then
                    raise TypeError(f"data set {data.name}: its table() has no labels")
                self.table.labels = data.labels()
            if self.table.storage.nbytes <= resident_bytes:  # on the device (or CPU) as is
                self._resident = (self.table.storage.to(device), self.table.rows.to(device))
                if labels:
                    self._labels_dev = self.table.labels.to(device)
                self.it = self._device_gather()
            else:
                self.it = self._host_gather(workers)
        else:
            # Its own generator: a DataLoader otherwise draws its base seed from the global
            # RNG, and the run's z would depend on the form of the data.
            keyed = _Keyed(data, data.labels() if labels else None)
            loader = DataLoader(keyed, batch_size=local_batch, sampler=self.sampler,
                                num_workers=workers, pin_memory=self.pin,
                                persistent_workers=workers > 0,
                                prefetch_factor=4 if workers > 0 else None,
                                drop_last=True, generator=torch.Generator().manual_seed(seed))
            self.it = (_unpack(batch, labels) for batch in loader)

    # -- in-memory data ---------------------------------------------------------------------
    def _replaced(self, idx: torch.Tensor) -> list[int]:
        if not self._any_replaced:
            return []
        hit = self.table.replaced[idx]
        return idx[hit].tolist() if hit.any() else []  # CPU tensors: no device sync

    def _keys(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx, flip = self.sampler.batch_keys(j)
        return idx, (flip.pin_memory() if self.pin and self.hflip else flip)

    def _device_gather(self) -> Iterator[Raw]:
        storage, rows = self._resident
        j = self.sampler.start_batch
        while True:
            idx, flip = self._keys(j)
            j += 1
            idx_dev = (idx.pin_memory() if self.pin else idx).to(self.device, non_blocking=True)
            got = rows[idx_dev]
            y = self._labels_dev[got] if self._labels_dev is not None else None
            yield storage[got], flip, self._replaced(idx), y

    def _host_batch(self, j: int) -> Raw:
        idx, flip = self._keys(j)
        storage = self.table.storage
        out = torch.empty((len(idx), *storage.shape[1:]), dtype=storage.dtype,
                          pin_memory=self.pin)
        got = idx if self._identity else self.table.rows[idx]
        torch.index_select(storage, 0, got, out=out)
        y = self.table.labels[got] if self.with_labels else None
        return out, flip, self._replaced(idx), (y.pin_memory() if self.pin and y is not None
                                                else y)

    def _host_gather(self, threads: int) -> Iterator[Raw]:
        """Batches gathered from host memory (a memory map) by `threads` threads, up to
        2 x threads batches ahead, delivered in stream order (0 threads: on demand)."""
        j = self.sampler.start_batch
        if threads <= 0:
            while True:
                yield self._host_batch(j)
                j += 1
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ganqp-gather")
        ahead: deque[Future] = deque()
        while True:
            while len(ahead) < 2 * threads:
                ahead.append(self._pool.submit(self._host_batch, j))
                j += 1
            yield ahead.popleft().result()

    # -- the stream -------------------------------------------------------------------------
    def _note(self, replaced: list[int]) -> None:
        self.skipped += len(replaced)
        for i in replaced:
            if i not in self._logged:
                self._logged.add(i)
                self.log(f"warning: skipping unreadable image {self.data.why(i)} "
                         "(data.on_error=skip: the next readable image is used instead)")

    def next_raw(self) -> torch.Tensor:
        """The next batch as stored (uint8 images), flipped, on the device; its labels in
        `labels`."""
        x, flip, replaced, y = next(self.it)
        if replaced:
            self._note(replaced)
        self.consumed += 1
        x = x.to(self.device, non_blocking=True)
        if y is not None:
            self.labels = y.to(self.device, non_blocking=True)
        if self.hflip:
            flip = flip.to(self.device, non_blocking=True).view(-1, *[1] * (x.ndim - 1))
            x = torch.where(flip, x.flip(-1), x)
        return x

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> torch.Tensor:
        x = self.data.to_model(self.next_raw())
        return x if self.memory_format is None else x.contiguous(memory_format=self.memory_format)

    def pop_stats(self) -> dict[str, float]:
        """Counters since the last call, for metrics.jsonl: {"data_skipped": unreadable
        items drawn and replaced (with data.on_error=skip)}."""
        n, self.skipped = self.skipped, 0
        return {"data_skipped": float(n)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _unpack(batch: list, labels: bool) -> Raw:
    x, flip, replaced, y = batch
    return (x, flip, (replaced[replaced >= 0].tolist() if (replaced >= 0).any() else []),
            y if labels else None)
