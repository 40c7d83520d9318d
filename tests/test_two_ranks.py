"""Two gloo processes against one, in one spawn (tests/two_ranks.py runs the scenarios):

- every gradient penalty (R1, R2, WGAN-GP, WGAN-div, and R1/R2 through the encoder models'
  critics) through a BatchNorm critic with arch.sync_bn: losses and averaged gradients of a
  critic and a generator update equal one process's on the global batch, within 1e-3
  relative (global BatchNorm differentiated twice, the bucketed gradient exchange);
- a plain iteration reads nothing back from the device, and a signal on one rank stops both
  at the same round of the stop flag;
- a checkpoint rank 0 cannot write stops every rank at once, naming the reason (before,
  the other ranks went on and waited train.dist_timeout_s in the next collective);
- the gradient exchange alone: one bucket per parameter, the mean of the ranks' gradients,
  no gradient where none was computed, and a NaN on one rank reaching both.
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from tests import two_ranks


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("two_ranks")
    run_dir = tmp / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("not a folder")
    mp.spawn(two_ranks.main, args=(2, f"file://{tmp / 'store'}", str(tmp), str(run_dir)),
             nprocs=2)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(2)]


def result(ranks: list[dict], scenario: str, rank: int = 0) -> dict:
    got = ranks[rank][scenario]
    assert "error" not in got, got["error"]
    return got


@pytest.mark.slow
@pytest.mark.parametrize("name", list(two_ranks.PENALTIES))
def test_penalties_through_global_batchnorm_on_two_ranks_equal_one_process(ranks, name):
    one = two_ranks.penalty_step(two_ranks.PENALTIES[name])
    two = result(ranks, "penalties")[name]
    other = result(ranks, "penalties", rank=1)[name]
    for key in ("d_loss", "g_loss"):
        assert two[key] == pytest.approx(one[key], rel=1e-3), (key, two[key], one[key])
    for key in ("d_grad", "g_grad"):
        assert torch.equal(two[key], other[key])  # every rank steps with the same gradient
        scale = float(one[key].abs().max())
        assert scale > 1e-4  # the gradients are not all zero: the check has power
        torch.testing.assert_close(two[key], one[key], rtol=1e-3, atol=1e-3 * scale,
                                   msg=f"{name} {key}")


@pytest.mark.slow
def test_two_ranks_read_nothing_back_and_stop_at_the_same_round(ranks):
    for rank in (0, 1):
        got = result(ranks, "syncs", rank)
        assert got["count"] == 0, got["report"]
        # rank 1's request is in the round started by the first call, read by the second
        assert got["answers"] == [False, True, True] and got["agreed"] == 15, got


@pytest.mark.slow
def test_the_exchanged_gradient_of_a_channels_last_weight_keeps_its_layout(ranks):
    """CUDA's fused and foreach Adam refuse a gradient laid out unlike its parameter (seen
    on an H200 with arch.sync_bn's two ranks): the averaged gradient keeps the weight's
    channels_last strides, with the two ranks' mean as its values."""
    one = []
    for rank in (0, 1):
        conv, x = two_ranks.channels_last_inputs(rank)
        conv(x).square().mean().backward()
        one.append([p.grad for p in conv.parameters()])
    for rank in (0, 1):
        got = result(ranks, "channels_last", rank)
        assert got["ok"]
        weight_stride, grad_stride = got["weight"]
        assert grad_stride == weight_stride == (27, 1, 9, 3)
        for g, a, b in zip(got["grads"], *one, strict=True):
            torch.testing.assert_close(g, (a + b) / 2, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_a_checkpoint_rank_0_cannot_write_stops_every_rank_at_once(ranks):
    for rank in (0, 1):
        raised = result(ranks, "checkpoint", rank)["raised"]
        assert raised is not None and raised.startswith(
            "rank 0 failed writing checkpoints/last.pt at iteration 1 ("), raised
        assert "Error" in raised  # the reason: rank 0's exception


@pytest.mark.slow
def test_the_gradient_exchange_averages_in_buckets_and_carries_the_flag(ranks):
    one = []
    for rank in (0, 1):  # the two ranks' gradients, computed here
        net, _, x = two_ranks.exchange_inputs(rank)
        net(x).square().mean().backward()
        one.append([p.grad for p in net.parameters()])
    mean = [(a + b) / 2 for a, b in zip(*one, strict=True)]
    for rank in (0, 1):
        got = result(ranks, "exchange", rank)
        assert got["buckets"] == 6  # one per parameter, the spare layer's two included
        clean = got["clean"]
        assert clean["ok"]
        for g, want in zip(clean["grads"][:4], mean, strict=True):
            torch.testing.assert_close(g, want, rtol=1e-6, atol=1e-7)
        assert clean["grads"][4:] == [None, None]  # no gradient: the optimiser skips it
        nan = got["nan_on_rank_1"]
        assert all(bool(torch.isfinite(g).all()) for g in nan["grads"][:4])
        assert not nan["ok"]  # rank 1's NaN loss reached rank 0 as well
