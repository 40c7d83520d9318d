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

import numpy as np
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
        # Under torchrun: the stop-flag all-reduce in flight (started by the last
        # should_stop), with the host array its result lands in.
        self.pending: tuple[Any, torch.Tensor, np.ndarray] | None = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
        if self.pending is not None and exc[0] is None:  # no collective left running
            self.pending[0].wait()
        self.pending = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        if self.requested is None:
            self.requested = signum
            print(f"ganqp: {signal.Signals(signum).name} received: finishing this iteration, "
                  "then writing checkpoints/last.pt (Ctrl-C again aborts at once)", flush=True)

    def should_stop(self) -> bool:
        """Whether any rank was asked to stop. Under torchrun every rank must stop after
        the same iteration (and take part in the checkpoint): each call starts an
        asynchronous max-reduce of this rank's request and reads the one the previous call
        started, which finished while the last iteration ran. So no call waits, a signal
        stops the run one iteration later than in one process, and the ranks agree."""
        if not dist_.current().enabled:
            agreed = self.requested or 0
        else:
            agreed = self._previous_round()
            if not agreed:
                self._start_round()
        if agreed:
            self.agreed = agreed
        return self.agreed is not None

    def _previous_round(self) -> int:
        if self.pending is None:
            return 0
        work, _, result = self.pending
        work.wait()
        self.pending = None
        # The flag lives in host memory (a gloo group, also beside NCCL): reading it is no
        # device read.
        return int(result[0])

    def _start_round(self) -> None:
        # A signal handled while a round runs is in this rank's flag from the next round on.
        result = np.array([self.requested or 0], dtype=np.int64)
        flag = torch.from_numpy(result)  # the same memory
        work = torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX,
                                            group=_flag_group(), async_op=True)
        self.pending = (work, flag, result)

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


_FLAG_GROUP: dict[int, Any] = {}  # id(the default group) -> its gloo twin


def _flag_group() -> Any:
    """A gloo group for the host-side flag: the default group when it is gloo, else one
    made once per default group (every rank makes it at the same call, as new_group
    requires)."""
    if torch.distributed.get_backend() == "gloo":
        return None
    key = id(torch.distributed.group.WORLD)
    if key not in _FLAG_GROUP:
        _FLAG_GROUP.clear()
        _FLAG_GROUP[key] = torch.distributed.new_group(backend="gloo")
    return _FLAG_GROUP[key]
