"""BatchNorm statistics over the global batch (`arch.sync_bn=true`).

Data-parallel ranks each see a shard of the batch; plain BatchNorm normalises each shard by
its own mean and variance, so N processes train a different model from one process with the
same global batch. `convert` swaps every BatchNorm layer of a built network for one whose
training-mode statistics are those of the whole global batch: `torch.nn.SyncBatchNorm` on
CUDA (NCCL, fused kernels) and `CrossProcessBatchNorm` elsewhere (gloo on the CPU, so the
multi-process tests exercise the same arithmetic).

Parameters and buffers keep their names, so checkpoints load into plain BatchNorm networks
(`ganqp sample`, `ganqp fid`) and back. In one process, and in eval mode, both layers are
plain BatchNorm. Neither supports double backward (a gradient penalty through BatchNorm).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.ndim)]


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *[1] * (x.ndim - 2))


class _GlobalBatchNorm(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with mean and (biased) var over the
    global batch: one all-reduce of (sum, sum of squares, count) per channel forward, one of
    (sum dy, sum dy * x_hat) backward. Returns (y, mean, var, count), the last three
    non-differentiable, for the running statistics."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor | None,
                bias: torch.Tensor | None, eps: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dims, c = _reduce_dims(x), x.shape[1]
        # float64 sums: E[x^2] - E[x]^2 cancels badly in float32 when |mean| >> std.
        xd = x.detach().double()
        local = torch.cat([xd.sum(dims), xd.square().sum(dims),
                           xd.new_tensor([x.numel() // c])])
        dist.all_reduce(local)
        count = local[-1]
        mean = local[:c] / count
        var = (local[c:2 * c] / count - mean.square()).clamp_min(0)
        invstd = (var + eps).rsqrt().float()
        x_hat = (x.float() - _per_channel(mean.float(), x)) * _per_channel(invstd, x)
        y = x_hat
        if weight is not None:
            y = y * _per_channel(weight.float(), x)
        if bias is not None:
            y = y + _per_channel(bias.float(), x)
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.count, ctx.in_dtype, ctx.has_bias = float(count), x.dtype, bias is not None
        ctx.mark_non_differentiable(mean, var, count)
        return y.to(x.dtype), mean, var, count

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, gy: torch.Tensor, *_: torch.Tensor
                 ) -> tuple[torch.Tensor | None, ...]:
        x_hat, invstd, weight = ctx.saved_tensors
        dims, c = _reduce_dims(x_hat), x_hat.shape[1]
        gy = gy.float()
        sums = torch.cat([gy.sum(dims), (gy * x_hat).sum(dims)])
        # The weight and bias get this rank's sums: the loop averages parameter gradients
        # over ranks like every other gradient.
        g_bias = sums[:c].clone() if ctx.has_bias else None
        g_weight = sums[c:].clone() if weight is not None else None
        g_x = None
        if ctx.needs_input_grad[0]:  # the same on every rank: the graphs are identical
            dist.all_reduce(sums)
            mean_dy, mean_dy_xhat = sums[:c] / ctx.count, sums[c:] / ctx.count
            scale = invstd if weight is None else invstd * weight.float()
            g_x = ((gy - _per_channel(mean_dy, gy) - x_hat * _per_channel(mean_dy_xhat, gy))
                   * _per_channel(scale, gy)).to(ctx.in_dtype)
        if g_weight is not None:
            g_weight = g_weight.to(weight.dtype)
        return g_x, g_weight, g_bias, None


class CrossProcessBatchNorm(_BatchNorm):
    """BatchNorm over N-d input (N >= 2, channels on dim 1) whose training-mode statistics
    cover every rank's shard; plain BatchNorm in eval mode and in one process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        y, mean, var, count = _GlobalBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            self._update_running(mean, var, count)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor
                        ) -> None:
        # The same rule as F.batch_norm: unbiased variance, momentum or cumulative average.
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else \
            1.0 / float(self.num_batches_tracked)
        unbiased = var * (count / (count - 1).clamp_min(1))
        self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
        self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)


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
    """torch's SyncBatchNorm where it runs (CUDA), ours elsewhere."""
    return nn.SyncBatchNorm if device_type == "cuda" else CrossProcessBatchNorm


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
        if isinstance(m, _BatchNorm) and not isinstance(m, nn.SyncBatchNorm | cls):
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

