"""Averaging gradients over the ranks while backward runs (data parallel, any objective).

A phase's parameters are split into buckets of about `BUCKET_MB` (the first `FIRST_MB`, so
that communication starts early), in reverse order, since backward produces the last
layers' gradients first. A hook on each parameter (`register_post_accumulate_grad_hook`,
run once its gradient of the backward pass is complete) copies the gradient into its
bucket; once every bucket before it has started, a full bucket's sum over the ranks starts
at once as an asynchronous all-reduce, while backward goes on with the layers before. The
buckets start in the same order on every rank. `finish` waits for them, divides by the
number of ranks and points each parameter's `.grad` at its slice of the averaged bucket.

One code path for every objective, and not DDP's: DDP cannot take a double backward, and
gradient penalties (WGAN-GP, WGAN-div, R1, R2) differentiate a gradient. The hooks fire
only where a gradient is accumulated into `.grad`, i.e. in the loss's `.backward()`, never
inside the penalty's `autograd.grad`, so the penalty's double backward runs as in one
process and its parameter gradients are exchanged with the rest.

The finiteness flag: the loss times 0 (NaN for a NaN or infinite loss) rides in the first
bucket's last element, so a non-finite loss or gradient on any rank makes the averaged
buckets non-finite on every rank, and every rank reads the same `finish()` flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

FIRST_MB = 1.0
BUCKET_MB = 25.0


@dataclass
class Bucket:
    buf: torch.Tensor
    slots: list[tuple[nn.Parameter, int, int]]  # (parameter, offset, length)
    got: set[int] = field(default_factory=set)  # slots whose gradient has arrived
    work: dist.Work | None = None


def plan_buckets(params: list[nn.Parameter], first_mb: float, mb: float
                 ) -> list[list[nn.Parameter]]:
    """The parameters, last first, in groups of one dtype and device of at most `mb` MB
    (`first_mb` for the first group); a parameter larger than that is a group alone."""
    groups: list[list[nn.Parameter]] = []
    size, cap = 0, first_mb * 2**20
    for p in reversed(params):
        nbytes = p.numel() * p.element_size()
        same = groups and (groups[-1][0].dtype, groups[-1][0].device) == (p.dtype, p.device)
        if not same or size + nbytes > cap and groups[-1]:
            if groups:
                cap = mb * 2**20
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += nbytes
    return groups


def _slot(buf: torch.Tensor, offset: int, n: int, p: nn.Parameter) -> torch.Tensor:
    """A parameter's slice of its bucket, laid out as the parameter is (a channels_last
    convolution's weight included): torch's fused and foreach optimisers on CUDA refuse a
    gradient whose strides differ from its parameter's."""
    part = buf[offset:offset + n]
    dense = p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(
        memory_format=torch.channels_last))
    return part.as_strided(p.shape, p.stride()) if dense else part.view_as(p)


class GradExchange:
    """The gradient exchange of one set of parameters (one phase's) over `world` ranks."""

    def __init__(self, params: list[nn.Parameter], world: int,
                 first_mb: float | None = None, mb: float | None = None) -> None:
        self.world = world
        self.buckets: list[Bucket] = []
        self.where: dict[int, tuple[int, int]] = {}  # id(param) -> (bucket, slot)
        groups = plan_buckets(params, FIRST_MB if first_mb is None else first_mb,
                              BUCKET_MB if mb is None else mb)
        for i, group in enumerate(groups):
            n = sum(p.numel() for p in group) + (1 if i == 0 else 0)  # + the flag
            offsets = [0]
            for p in group:
                offsets.append(offsets[-1] + p.numel())
            slots = [(p, offsets[k], p.numel()) for k, p in enumerate(group)]
            self.buckets.append(Bucket(group[0].new_zeros(n), slots))
            for k, p in enumerate(group):
                self.where[id(p)] = (i, k)
        self.armed, self.next = False, 0
        self.hooks = [p.register_post_accumulate_grad_hook(self._arrived)
                      for b in self.buckets for p, _, _ in b.slots]

    def arm(self, flag: torch.Tensor) -> None:
        """Before the backward pass whose gradients are to be exchanged; `flag` is the loss
        (only its finiteness travels)."""
        for b in self.buckets:
            b.got.clear()
            b.work = None
        self.next, self.armed = 0, True
        if self.buckets:
            first = self.buckets[0].buf
            first[-1:].copy_(flag.detach().reshape(1).to(first.dtype) * 0)

    def _arrived(self, p: nn.Parameter) -> None:
        if not self.armed or p.grad is None:
            return
        i, k = self.where[id(p)]
        b = self.buckets[i]
        _, offset, n = b.slots[k]
        _slot(b.buf, offset, n, p).copy_(p.grad.detach())
        b.got.add(k)
        self._start_full()

    def _start_full(self) -> None:
        while self.next < len(self.buckets) and \
                len(self.buckets[self.next].got) == len(self.buckets[self.next].slots):
            b = self.buckets[self.next]
            b.work = dist.all_reduce(b.buf, async_op=True)
            self.next += 1

    def finish(self) -> torch.Tensor:
        """After the backward pass: wait for every bucket, average, set `.grad`; returns
        whether the loss and every gradient are finite on every rank (a device bool)."""
        for b in self.buckets[self.next:]:  # parameters that got no gradient: zeros
            for k, (_, offset, n) in enumerate(b.slots):
                if k not in b.got:
                    b.buf[offset:offset + n].zero_()
            b.got.update(range(len(b.slots)))
        self._start_full()
        self.armed = False
        for b in self.buckets:
            b.work.wait()
            b.buf.div_(self.world)
            for p, offset, n in b.slots:
                if p.grad is not None:
                    p.grad = _slot(b.buf, offset, n, p)
        bufs = [b.buf for b in self.buckets]
        if not bufs:
            return torch.tensor(True)
        # the L1 norm, in float32: see training/phases._all_finite
        sums = torch._foreach_norm(bufs, 1, dtype=torch.float32)
        return torch.isfinite(torch.stack(list(sums))).all()

    def close(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
