"""Inference-time fusion of the FID Inception's conv -> BatchNorm -> ReLU units (torchvision's
BasicConv2d, 94 of them) into one convolution each.

BatchNorm in eval mode is a per-channel affine map, so it folds into the convolution's
weights and a bias (computed in float64, rounded once to float32). On the CPU the ReLU then
runs inside oneDNN's convolution as a post-op (`mkldnn::_convolution_pointwise`, the
kernel torch.compile's CPU backend emits for the same pattern): each activation is written
once instead of being passed over three times (convolution, normalisation, ReLU), which
was a quarter of the extraction time. Elsewhere (CUDA, a build without oneDNN) the folded
convolution runs through F.conv2d and an in-place ReLU; the fold alone saves a pass there.

Features stay float32; the rounding differs from pytorch-fid's unfused network by about
5e-7 of the largest feature (tests/test_metrics.py holds it under 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pointwise_conv():  # the fused op, or None where this build of torch lacks it
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return None


POINTWISE_CONV = _pointwise_conv()


class ConvReLU(nn.Module):
    """relu(conv2d(x, weight, bias)): a folded conv -> BatchNorm -> ReLU unit."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, int],
                 padding: tuple[int, int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding = list(stride), list(padding)
        self.fused = POINTWISE_CONV is not None  # tests switch it off to check the fallback

    @classmethod
    def fold(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> ConvReLU:
        if conv.bias is not None or conv.groups != 1 or tuple(conv.dilation) != (1, 1):
            raise ValueError("ConvReLU folds only the Inception's plain bias-free convolutions")
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = conv.weight.double() * scale[:, None, None, None]
        bias = bn.bias.double() - bn.running_mean.double() * scale
        return cls(weight.float(), bias.float(), conv.stride, conv.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and x.is_cpu:
            return POINTWISE_CONV(x, self.weight, self.bias, self.padding, self.stride,
                                  [1, 1], 1, "relu", [None], "")
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding),
                      inplace=True)


def fold_conv_units(net: nn.Module) -> int:
    """Replace every torchvision BasicConv2d in `net` (in place) by its ConvReLU; the
    number replaced. `net` must be in eval mode: the fold uses the running statistics."""
    from torchvision.models.inception import BasicConv2d
    count = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BasicConv2d):
                setattr(module, name, ConvReLU.fold(child.conv, child.bn))
                count += 1
    return count
