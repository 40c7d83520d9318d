"""Counting the calls that make the host wait for the device (host synchronisations).

On a GPU, Python queues kernels and returns at once; a call that needs a value computed on
the device (`Tensor.item()`, `bool(t)`, `float(t)`, `.tolist()`, `.cpu()`, printing a
tensor, `nonzero`, boolean-mask indexing, `torch.cuda.synchronize`, ...) waits until the
device has run everything queued before it, so the device idles while the host catches up.
`SyncCounter` wraps those calls while it is entered and counts them, with the line of
ganqp's code that made each one, so that the CPU (where nothing waits) can show what a GPU
run would wait for: tests/test_syncs.py asserts that a plain training iteration (one that
logs, samples and saves nothing) makes none, and scripts/bench_train.py prints the count
per iteration beside its speed ratio.

A call made inside another counted call (printing calls `item`) counts once. Tensors that
live on the host in a GPU run too (the step counters of torch's Adam without fused=True or
capturable=True) are passed as `host` and not counted. On CUDA the counter also turns on
torch's own sync detection (`torch.cuda.set_sync_debug_mode("warn")`) and counts its
warnings as `device_syncs`: the ground truth there, which the CPU cannot give.
"""

from __future__ import annotations

import collections
import functools
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

# Tensor methods that read a value computed on the device.
TENSOR_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__",
                  "__complex__", "numpy", "cpu", "__array__", "__repr__", "__format__",
                  "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive",
                  "equal", "allclose", "is_nonzero")
# torch functions whose output size (or result) is a value on the device.
TORCH_FUNCTIONS = ("nonzero", "argwhere", "masked_select", "unique", "unique_consecutive",
                   "equal", "allclose", "is_nonzero")
CUDA_FUNCTIONS = ("synchronize",)

_TORCH_DIR = str(Path(torch.__file__).parent)
_THIS = __file__


def _is_mask(index: Any) -> bool:
    """A boolean (or uint8) tensor index, alone or in a tuple: indexing by it needs the
    number of true entries, i.e. a nonzero on the device."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in items)


class SyncCounter:
    """`with SyncCounter() as c: ...` counts blocking calls made in the block: `c.count`,
    and `c.sites` (a Counter of 'file:line call' of the first frame outside torch)."""

    def __init__(self, host: Iterable[torch.Tensor] = ()) -> None:
        self.host = {id(t) for t in host}
        self.count = 0
        self.sites: collections.Counter[str] = collections.Counter()
        self.device_syncs = 0
        self._saved: list[tuple[Any, str, Any]] = []
        self._local = threading.local()
        self._warnings: Any = None
        self._mode = 0

    # -- counting -----------------------------------------------------------------------
    def reset(self) -> None:
        self.count, self.device_syncs = 0, 0
        self.sites.clear()
        if self._warnings is not None:
            self._warnings.clear()

    def _record(self, what: str) -> None:
        frame = sys._getframe(2)
        while frame is not None and (frame.f_code.co_filename.startswith(_TORCH_DIR)
                                     or frame.f_code.co_filename == _THIS):
            frame = frame.f_back
        where = "?" if frame is None else f"{frame.f_code.co_filename}:{frame.f_lineno}"
        self.count += 1
        self.sites[f"{where} {what}"] += 1

    def _wrap(self, fn: Callable, what: str, counts: Callable[..., bool]) -> Callable:
        local = self._local

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if getattr(local, "inside", False):
                return fn(*args, **kwargs)
            local.inside = True
            try:
                if counts(*args, **kwargs):
                    self._record(what)
                return fn(*args, **kwargs)
            finally:
                local.inside = False
        return wrapper

    def _not_host(self, *args: Any, **kwargs: Any) -> bool:
        first = args[0] if args else None
        return not (isinstance(first, torch.Tensor) and id(first) in self.host)

    # -- installing ---------------------------------------------------------------------
    def _patch(self, owner: Any, name: str, what: str, counts: Callable[..., bool]) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            return
        self._saved.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, self._wrap(fn, what, counts))

    def __enter__(self) -> SyncCounter:
        for name in TENSOR_METHODS:
            self._patch(torch.Tensor, name, f"Tensor.{name}", self._not_host)
        for name in TORCH_FUNCTIONS:
            self._patch(torch, name, f"torch.{name}", self._not_host)
        for name in CUDA_FUNCTIONS:
            self._patch(torch.cuda, name, f"torch.cuda.{name}", lambda *a, **k: True)
        for cls in (getattr(torch.cuda, "Stream", None), getattr(torch.cuda, "Event", None)):
            if cls is not None:
                self._patch(cls, "synchronize", f"{cls.__name__}.synchronize",
                            lambda *a, **k: True)
        for name in ("__getitem__", "__setitem__"):
            self._patch(torch.Tensor, name, f"Tensor.{name} with a mask",
                        lambda t, index, *a: _is_mask(index))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self._mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
            self._catch = warnings.catch_warnings(record=True)
            self._warnings = self._catch.__enter__()
            warnings.simplefilter("always")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._warnings is not None:
            self.device_syncs += sum("synchroniz" in str(w.message) for w in self._warnings)
            self._catch.__exit__(*exc)
            self._warnings = None
            torch.cuda.set_sync_debug_mode(self._mode)
        for owner, name, own in reversed(self._saved):
            if own is None:  # inherited (Tensor's C methods): uncover it again
                delattr(owner, name)
            else:
                setattr(owner, name, own)
        self._saved.clear()

    def report(self, n: int = 8) -> str:
        """The most frequent sites, one per line."""
        return "\n".join(f"{k} x{v}" for k, v in self.sites.most_common(n))


def host_state(optimizers: Iterable[torch.optim.Optimizer]) -> list[torch.Tensor]:
    """The optimisers' state tensors that stay on the host in a GPU run: torch keeps a
    non-fused, non-capturable optimiser's `step` counters on the CPU, and reading them
    waits for nothing."""
    out = []
    for opt in optimizers:
        for group in opt.param_groups:
            if group.get("fused") or group.get("capturable"):
                continue
            for p in group["params"]:
                step = opt.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor):
                    out.append(step)
    return out
