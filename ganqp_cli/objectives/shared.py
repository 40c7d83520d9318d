"""What a critic step computed, for other terms of the same step to reuse.

A regulariser that needs the step's fake batch, or the critic's scores on its real and fake
batches, would otherwise generate G(z) again and run the critic again on batches the step
already has. An objective's `critic_loss` hands them over with `share(...)`; the training
loop opens a `recording()` around the loss and passes what was shared on. Outside a
recording (tests, scripts calling a loss directly) `share` does nothing. The objectives
never learn who reads what they share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass
class Shared:
    """`fake`: the step's fake batch (as `Objective.fake_batch` makes it); `real_score`,
    `fake_score`: `Objective.critic_score` on the step's real and fake batches, with their
    graphs (differentiable in the critic). None where the objective did not share it."""

    fake: torch.Tensor | None = None
    real_score: torch.Tensor | None = None
    fake_score: torch.Tensor | None = None


_CURRENT: ContextVar[Shared | None] = ContextVar("ganqp_shared", default=None)


@contextlib.contextmanager
def recording() -> Iterator[Shared]:
    """Collect what the losses called inside share."""
    record = Shared()
    token = _CURRENT.set(record)
    try:
        yield record
    finally:
        _CURRENT.reset(token)


def share(fake: torch.Tensor | None = None, real_score: torch.Tensor | None = None,
          fake_score: torch.Tensor | None = None) -> None:
    record = _CURRENT.get()
    if record is None:
        return
    for name, value in (("fake", fake), ("real_score", real_score),
                        ("fake_score", fake_score)):
        if value is not None:
            setattr(record, name, value)
