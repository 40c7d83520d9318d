"""Stopping a run cleanly on a signal.

SIGTERM (what SLURM and torchrun send), SIGINT (Ctrl-C), SIGUSR1 and SIGUSR2 (what SLURM's
`--signal` and submitit send before a time limit) only set a flag; the loop finishes the
iteration it is in, writes checkpoints/last.pt (every rank takes part), sets status.json to
`interrupted` and exits with 128 + the signal's number. A second SIGINT aborts at once. For
SIGUSR1/SIGUSR2 a handler installed before ours (submitit's, which requeues the job) is
called after the checkpoint, so requeueing stays the launcher's business.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch

from ganqp_cli import distributed as dist_

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    """A context that turns HANDLED signals into a stop request (`requested`)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        if self.requested is None:
            self.requested = signum
            print(f"ganqp: {signal.Signals(signum).name} received: finishing this iteration, "
                  "then writing checkpoints/last.pt (Ctrl-C again aborts at once)", flush=True)

    def should_stop(self) -> bool:
        """Whether any rank was asked to stop (one tiny collective under torchrun, so that
        every rank stops after the same iteration and takes part in the checkpoint)."""
        d = dist_.current()
        if not d.enabled:
            return self.requested is not None
        flag = torch.tensor([0 if self.requested is None else int(self.requested)],
                            dtype=torch.int64, device=_collective_device())
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if self.requested is None and int(flag.item()):
            self.requested = int(flag.item())
        return self.requested is not None

    def exit_code(self) -> int:
        return 128 + int(self.requested or 0)

    def hand_over(self) -> None:
        """After the checkpoint: let a launcher's own SIGUSR1/SIGUSR2 handler run."""
        sig = self.requested
        prev = self.previous.get(sig) if sig in (signal.SIGUSR1, signal.SIGUSR2) else None
        if callable(prev):
            prev(sig, None)


def _collective_device() -> torch.device:
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
