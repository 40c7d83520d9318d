"""Gradients of a network's output with respect to its inputs, for penalties (WGAN-GP's
gradient penalty, R1/R2, WGAN-div), correct under mixed precision.

Under fp16 autocast the backward pass of `autograd.grad` underflows just as the loss's does,
so it needs the same loss scaling (PyTorch's AMP recipe for gradient penalties): the output
is multiplied by the grad scaler's scale before differentiating and the gradient divided by
it afterwards, before the penalty is formed. The training loop sets the scaler of the phase
being computed (`scaling`); outside it, or in bf16 and fp32, the scale is 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import torch

from ganqp_cli.objectives.losses import full

_SCALER: ContextVar[torch.amp.GradScaler | None] = ContextVar("ganqp_grad_scaler",
                                                               default=None)


@contextlib.contextmanager
def scaling(scaler: torch.amp.GradScaler | None) -> Iterator[None]:
    """Make `scaler` the one `input_gradient` uses while the block runs."""
    token = _SCALER.set(scaler)
    try:
        yield
    finally:
        _SCALER.reset(token)


def active_scale() -> torch.Tensor | None:
    """The loss scale `input_gradient` applies now: the enabled scaler's scale, a tensor on
    the device (reading it as a number would make the host wait for the device), else None."""
    scaler = _SCALER.get()
    if scaler is None or not scaler.is_enabled():
        return None
    scale = scaler._get_scale_async()  # torch's name for the scale tensor, left unread
    # Before the scaler's first scale(): its initial scale, a number on the host.
    return scale if scale is not None else torch.tensor(scaler.get_scale())


def input_gradient(output: torch.Tensor, inputs: torch.Tensor | Sequence[torch.Tensor],
                   create_graph: bool = True) -> list[torch.Tensor]:
    """d sum(output) / d input for each of `inputs`, unscaled, in float32 or wider (float64
    stays float64), with a graph for the penalty's own backward pass (`create_graph`).

    `output` is reduced in float32 (or wider) first. The differentiation itself runs with autocast
    off: it replays the forward pass's dtypes, and on the CPU (where backward runs on the
    calling thread) an enclosing autocast would otherwise recast the double-backward graph.
    A scaled gradient that overflowed stays inf after unscaling, so the loss is non-finite
    and the loop skips the step as the scaler would."""
    xs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    out = full(output).sum()
    scale = active_scale()
    if scale is not None:
        out = out * scale
    with torch.autocast(xs[0].device.type, enabled=False):
        grads = torch.autograd.grad(out, xs, create_graph=create_graph)
    return [full(g) / scale if scale is not None else full(g) for g in grads]
