"""G(z) in batches, and which generator a command uses: the one place for both.

Every image a command makes (training's sample grids and FID, `ganqp sample`, `ganqp fid
ckpt=...`, `ganqp reconstruct`'s decodes) goes through `generate`, so they agree to the bit
on the same z and generator. A class-conditional generator gets `labels`, one per row of z.
"""

from __future__ import annotations

import torch
from torch import nn

from ganqp_cli.data import to_uint8
from ganqp_cli.networks.conditional import conditioned, is_conditional


def choose(G: nn.Module, ema: nn.Module | None, want_ema: bool) -> nn.Module:
    """The rule for every command: the EMA generator when the run kept one (`train.ema > 0`,
    passed as `ema`, else None) and the caller wants it (`ema=true`, the default), else G."""
    return ema if want_ema and ema is not None else G


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch: int = 256,
             device: torch.device | str | None = None, uint8: bool = False,
             out_device: torch.device | str | None = "cpu",
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) in eval mode (BatchNorm running statistics), `batch` rows at a time, on the
    generator's device; G's train/eval mode is restored afterwards.

    `uint8`: quantised as PNGs hold them (ganqp_cli.data.to_uint8), else float32 in [-1, 1].
    `out_device`: where the result is gathered (None: where it was made).
    `labels`: the class of each row of z, for a class-conditional G (which needs them)."""
    if device is None:
        device = next(iter(G.parameters())).device
    if (labels is None) == is_conditional(G):
        raise ValueError("generate: labels are for class-conditional generators, and "
                         "those need them")
    was_training = G.training
    G.eval()
    try:
        parts = []
        for i in range(0, z.shape[0], batch):
            y = None if labels is None else labels[i:i + batch].to(device)
            with conditioned(G, y):
                x = G(z[i:i + batch].to(device))
            x = to_uint8(x) if uint8 else x.float()
            parts.append(x if out_device is None else x.to(out_device))
    finally:
        G.train(was_training)
    if not parts:
        raise ValueError("generate: z holds no rows")
    return torch.cat(parts)
