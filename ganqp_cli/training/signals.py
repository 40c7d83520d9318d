"""Stopping a run cleanly on a signal.

SIGTERM (what SLURM and torchrun send), SIGINT (Ctrl-C), SIGHUP (a closed terminal), SIGUSR1
and SIGUSR2 (what SLURM's `--signal` and submitit send before a time limit) only set a flag;
the loop finishes the iteration it is in, writes checkpoints/last.pt (every rank takes part),
sets status.json to `interrupted` and exits with 128 + the signal's number. A second SIGINT
aborts at once. For SIGUSR1/SIGUSR2 a handler installed before ours (submitit's, which
requeues the job) is called after the checkpoint, so requeueing stays the launcher's business.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch

from ganqp_cli import distributed as dist_

# SIGHUP: a closed terminal or ssh session, and torchrun forwards it to its workers.
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    """A context that turns HANDLED signals into a stop request.

    `requested` is the signal this process got; `agreed` the one every rank stops for, set
    only by `should_stop` (under torchrun a signal may reach one rank, or reach the ranks
    at different moments: what the loop does after it ends must be the same on all)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self.agreed: int | None = None
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
        if not dist_.current().enabled:
            agreed = self.requested or 0
        else:
            flag = torch.tensor([self.requested or 0], dtype=torch.int64,
                                device=_collective_device())
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            # The reduced flag alone decides: a signal handled while the collective ran
            # (its handler runs when the call returns) is in this rank's flag from the
            # next call on; going by `requested` now would stop this rank only.
            agreed = int(flag.item())
        if agreed:
            self.agreed = agreed
        return self.agreed is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.agreed).name if self.agreed else ""

    def exit_code(self) -> int:
        return 128 + int(self.agreed or 0)

    def hand_over(self) -> None:
        """After the checkpoint: let a launcher's own SIGUSR1/SIGUSR2 handler run."""
        sig = self.agreed
        prev = self.previous.get(sig) if sig in (signal.SIGUSR1, signal.SIGUSR2) else None
        if callable(prev):
            prev(sig, None)


def _collective_device() -> torch.device:
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
