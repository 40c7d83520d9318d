"""BatchNorm statistics over the global batch (`arch.sync_bn=true`).

Data-parallel ranks each see a shard of the batch; plain BatchNorm normalises each shard by
its own mean and variance, so N processes train a different model from one process with the
same global batch. `convert` swaps every BatchNorm layer of a built network for
`CrossProcessBatchNorm`, whose training-mode statistics are those of the whole global batch,
on every device (gloo on the CPU, NCCL on GPUs).

It is built from differentiable operations and one differentiable all-reduce per layer
(`SumOverRanks`, whose backward is itself a `SumOverRanks`), so autograd differentiates it
as often as asked: gradient penalties through a BatchNorm critic (R1, R2, WGAN-GP, WGAN-div)
work, which torch.nn.SyncBatchNorm (differentiable once) cannot do. Nor does it read
anything back to the host: every rank holds batch_size / world samples (the loop splits the
global batch evenly), so the global count is known without exchanging it, where
torch.nn.SyncBatchNorm syncs the host once per layer and forward to drop empty shards.

Per channel, each rank sends its shard's mean m_r, m_r^2 and sum of squared deviations S_r
(in float64, c values each); the global mean is the average of the m_r and the variance
(sum of S_r) / N + (average of m_r^2 - mean^2): no E[x^2] - E[x]^2 over raw values, which
cancels badly in float32 when |mean| >> std.

Parameters and buffers keep their names, so checkpoints load into plain BatchNorm networks
(`ganqp sample`, `ganqp fid`) and back. In one process, and in eval mode, it is plain
BatchNorm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import FunctionCtx
from torch.nn.modules.batchnorm import _BatchNorm


class SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks. The gradient of a sum over ranks is the sum over
    ranks of the gradients (every rank's loss depends on it), computed by this Function
    again, so it is differentiable any number of times."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return SumOverRanks.apply(grad)


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.ndim)]


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *[1] * (x.ndim - 2))


def global_batch_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      eps: float, world: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(y, mean, biased var, N) over the global batch of `world` equal shards, y in x's dtype;
    mean and var are differentiable (the running statistics take them detached)."""
    dims, c = _reduce_dims(x), x.shape[1]
    xf = x.float()
    n_local = x.numel() // c
    m = xf.mean(dims)
    dev = xf - _per_channel(m, xf)
    s = dev.square().sum(dims)
    m64 = m.double()
    sums = SumOverRanks.apply(torch.cat([m64, m64.square(), s.double()]))
    mean = sums[:c] / world
    var = (sums[2 * c:] / (n_local * world) + (sums[c:2 * c] / world - mean.square())
           ).clamp_min(0)
    invstd = (var + eps).rsqrt().float()
    y = (xf - _per_channel(mean.float(), xf)) * _per_channel(invstd, xf)
    if weight is not None:
        y = y * _per_channel(weight.float(), xf)
    if bias is not None:
        y = y + _per_channel(bias.float(), xf)
    return y.to(x.dtype), mean, var, n_local * world


class CrossProcessBatchNorm(_BatchNorm):
    """BatchNorm over N-d input (N >= 2, channels on dim 1) whose training-mode statistics
    cover every rank's shard (all shards of one size); plain BatchNorm in eval mode and in
    one process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        y, mean, var, count = global_batch_norm(x, self.weight, self.bias, self.eps,
                                                dist.get_world_size())
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        # The same rule as F.batch_norm: unbiased variance, momentum or cumulative average.
        self.num_batches_tracked.add_(1)
        unbiased = var * (count / max(count - 1, 1))
        for running, new in ((self.running_mean, mean), (self.running_var, unbiased)):
            new = new.to(running.dtype)
            if self.momentum is None:  # 1 / num_batches_tracked, left on the device
                m = self.num_batches_tracked.reciprocal().to(running.dtype)
                running.mul_(1 - m).add_(new * m)
            else:
                running.mul_(1 - self.momentum).add_(new, alpha=self.momentum)


def _replacement(bn: _BatchNorm, cls: type[_BatchNorm]) -> _BatchNorm:
    new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
              track_running_stats=bn.track_running_stats)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    new.running_mean, new.running_var = bn.running_mean, bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def layer_class(device_type: str) -> type[_BatchNorm]:
    """The global-batch layer for `device_type`: ours everywhere (see the module)."""
    return CrossProcessBatchNorm


def convert(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm layer of `module` (in place; the root too, returned) by the
    global-batch layer for `device_type`, sharing its parameters and buffers. A layer that
    appears twice in the tree is replaced by one layer (tied stays tied)."""
    cls = layer_class(device_type)
    done: dict[int, nn.Module] = {}

    def swap(m: nn.Module) -> nn.Module:
        if id(m) in done:
            return done[id(m)]
        out = m
        if isinstance(m, _BatchNorm) and not isinstance(m, cls):
            out = _replacement(m, cls)
        done[id(m)] = out
        # _modules, not named_children(): that skips a second reference to one layer
        for name, child in list(m._modules.items()):
            if child is not None:
                out.add_module(name, swap(child))
        return out

    return swap(module)


def count_converted(module: nn.Module) -> int:
    return sum(isinstance(m, nn.SyncBatchNorm | CrossProcessBatchNorm) for m in module.modules())

