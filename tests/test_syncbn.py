"""arch.sync_bn: BatchNorm over the global batch. Two gloo processes, each with half of a
batch, must produce what one BatchNorm produces on the whole batch: outputs, input and
parameter gradients, running statistics (BatchNorm1d and 2d, momentum and cumulative
averages, bf16 input). Also: the conversion keeps names, sharing and single-process results.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ganqp_cli import syncbn
from ganqp_cli.networks import QPArch

CASES = [  # (input shape, momentum, dtype)
    ((8, 5), 0.1, torch.float32),
    ((6, 3, 4, 4), 0.01, torch.float32),
    ((6, 3, 4, 4), None, torch.float32),
    ((4, 3, 2, 2), 0.1, torch.bfloat16),
]


def _inputs(shape, dtype):
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, generator=g) * 3 + 5  # |mean| > std: catches E[x^2] - E[x]^2
    w_out = torch.randn(shape, generator=g)
    weight, bias = torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)
    return x.to(dtype), w_out, weight, bias


def _reference(shape, momentum, dtype):
    """One process, plain BatchNorm, the whole batch, two training steps."""
    x, w_out, weight, bias = _inputs(shape, dtype)
    bn = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1], momentum=momentum)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    x = x.float().requires_grad_(True)  # plain BatchNorm's reference in float32
    for _ in range(2):
        y = bn(x)
        (y * w_out).sum().backward()
    return y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var


def _worker(rank: int, world: int, init: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        for shape, momentum, dtype in CASES:
            ref = _reference(shape, momentum, dtype)
            x, w_out, weight, bias = _inputs(shape, dtype)
            n = shape[0] // world
            rows = slice(rank * n, (rank + 1) * n)
            bn = syncbn.CrossProcessBatchNorm(shape[1], momentum=momentum)
            with torch.no_grad():
                bn.weight.copy_(weight)
                bn.bias.copy_(bias)
            xr = x[rows].clone().requires_grad_(True)
            for _ in range(2):
                y = bn(xr)
                (y.float() * w_out[rows]).sum().backward()
            assert y.dtype == dtype
            grads = torch.cat([bn.weight.grad, bn.bias.grad])
            dist.all_reduce(grads)  # the loop sums (averages) parameter gradients likewise
            tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else \
                dict(rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(y.float(), ref[0][rows], **tol)
            torch.testing.assert_close(xr.grad.float(), ref[1][rows], **tol)
            torch.testing.assert_close(grads, torch.cat([ref[2], ref[3]]), **tol)
            torch.testing.assert_close(bn.running_mean, ref[4], **tol)
            torch.testing.assert_close(bn.running_var, ref[5], **tol)  # unbiased, global n
            assert int(bn.num_batches_tracked) == 2
            bn.eval()  # eval mode: running statistics, no collective
            torch.testing.assert_close(bn(x.float()), nn.functional.batch_norm(
                x.float(), ref[4], ref[5], weight, bias, False, 0.0, bn.eps), **tol)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_normalise_like_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}"), nprocs=2, join=True)


def _grad_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    model(x).square().mean().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("device_type,cls", [("cpu", syncbn.CrossProcessBatchNorm),
                                             ("cuda", syncbn.CrossProcessBatchNorm)])
def test_convert_replaces_every_batchnorm_keeping_names_and_tensors(device_type, cls):
    torch.manual_seed(0)
    G = QPArch(width=0.125).generator((1, 16, 16))  # BatchNorm1d and BatchNorm2d layers
    plain = copy.deepcopy(G)
    bn_params = {id(t) for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for t in (*m.parameters(), *m.buffers())}
    out = syncbn.convert(G, device_type)
    assert out is G and syncbn.count_converted(G) == 2  # BatchNorm1d + BatchNorm2d at 16 px
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in G.modules())
    assert all(isinstance(m, cls) for m in G.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))
    # the very same tensors (optimisers made before conversion would still hold them) ...
    assert bn_params == {id(t) for m in G.modules() if isinstance(m, cls)
                         for t in (*m.parameters(), *m.buffers())}
    assert list(G.state_dict()) == list(plain.state_dict())  # ... under the same names
    if device_type == "cpu":  # in one process: plain BatchNorm, to the bit
        z = torch.randn(4, 128)
        assert torch.equal(G(z), plain(z))
        assert torch.equal(_grad_of(G, z), _grad_of(plain, z))
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(),
                                                     plain.state_dict().values(), strict=True))


def test_convert_keeps_a_shared_layer_shared():
    bn = nn.BatchNorm2d(3)
    net = nn.Sequential(bn, nn.ReLU(), bn)
    syncbn.convert(net, "cpu")
    assert net[0] is net[2] and isinstance(net[0], syncbn.CrossProcessBatchNorm)
    root = syncbn.convert(nn.BatchNorm1d(2), "cpu")  # a BatchNorm root is returned converted
    assert isinstance(root, syncbn.CrossProcessBatchNorm)
