"""The non-finite guard: an update with a non-finite loss or gradient is skipped (parameters,
optimiser state and buffers as they were), counted as skipped_steps, and train.nan_patience
in a row end the run with exit 1 and status failed; no checkpoint holds a non-finite tensor."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from hydra import compose, initialize_config_module

from ganqp_cli import checkpoint as ckpt
from ganqp_cli.distributed import Dist
from ganqp_cli.errors import RunFailed
from ganqp_cli.training import guard as guard_mod
from ganqp_cli.training.phases import Guard, _all_finite, phases, update
from ganqp_cli.training.setup import Setup, seed_all
from tests.conftest import read_metrics

TINY = ["res=16", "arch.width=0.125", "train.batch_size=16", "train.sample_every=0",
        "train.sample_n=4", "train.workers=0"]


def test_a_diverging_run_stops_with_exit_1_and_status_failed(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "objective=fgan-kl", "objective.opt_d.lr=10",
            "objective.opt_g.lr=10", "train.iters=200", "train.log_every=5",
            "train.ckpt_every=10", f"hydra.run.dir={run}")
    assert r.code == 1, r
    assert "training diverged: 20 critic updates in a row" in r.msg and "Traceback" not in r.err
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "training diverged" in status["reason"]
    stop = status["iter"]
    assert 20 <= stop < 200
    rows = read_metrics(run)
    skipped = [row["skipped_steps"] for row in rows]
    assert skipped == sorted(skipped) and skipped[-1] >= 19  # counted, cumulative
    assert all(math.isfinite(row["g_loss"]) for row in rows)  # skipped losses not logged
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iter"] <= stop
    ckpt.check_finite(state)  # what was written is a state to train on


def test_nan_patience_sets_how_many_in_a_row(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "objective=fgan-kl", "objective.opt_d.lr=10",
            "objective.opt_g.lr=10", "train.iters=200", "train.log_every=1",
            "train.ckpt_every=0", "train.nan_patience=3", f"hydra.run.dir={run}")
    assert r.code == 1 and "3 critic updates in a row" in r.msg, r


def _setup(*extra: str) -> Setup:
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, "objective=gan-qp", *extra])  # BatchNorm
    seed_all(0)
    return Setup(cfg, Dist(), torch.device("cpu"))


def _snapshot(s: Setup) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in s.models.state_dict().items()}
    for i, st in s.opt_d.state_dict()["state"].items():
        state.update({f"opt.{i}.{k}": v.clone() for k, v in st.items()})
    return state


# How the skip is made: read on the host (the CPU's own path), a bitwise restore on the
# device (a GPU's, torch's default Adam), the fused optimiser's found_inf.
PATHS = {"host": [], "device-restore": [], "device-fused": ["+objective.opt_d.fused=true"]}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_skipped_update_changes_nothing(monkeypatch, path):
    if path != "host":
        monkeypatch.setattr(guard_mod, "HOST_READ_IS_FREE", set())
    s = _setup(*PATHS[path])
    critic = phases(s)[0]
    real = s.data.to_model(s.data.tensor[:16])
    z = torch.randn(16, s.z_dim)
    for _ in range(2):  # good steps: Adam has state, and the device paths are in use
        loss, _, ok = update(s, critic, real, z)
        assert ok and math.isfinite(float(loss.detach()))
    before = _snapshot(s)

    def nan_loss(m, real, z):  # runs the critic (BatchNorm statistics move), then NaN
        out, stats = critic.loss(m, real, z)
        return out * float("nan"), stats

    loss, _, ok = update(s, replace(critic, loss=nan_loss), real, z)
    assert not ok and math.isnan(float(loss.detach()))
    after = _snapshot(s)
    assert before.keys() == after.keys() and len(before) > 20
    for k in before:  # parameters, running statistics, Adam's moments and step counts
        assert torch.equal(before[k], after[k]), k
    loss, _, ok = update(s, critic, real, z)  # and the next good step is applied
    later = _snapshot(s)
    assert ok and all(not torch.equal(before[k], later[k]) for k in before
                      if k.startswith("D.") and k.endswith("weight"))


def test_the_guard_counts_on_the_device_and_stops_at_its_patience():
    guard = Guard(3)
    flags = [True, False, False, True, False, False, False, False]  # 4 in a row from it 4
    for it, ok in enumerate(flags):
        guard.record(torch.tensor(ok), "critic", it)
        guard.record(torch.tensor(True), "generator", it)
    assert guard.skipped == 6
    with pytest.raises(RunFailed, match=r"3 critic updates in a row .* in iteration 7\)"):
        guard.check()
    guard = Guard(3)
    guard.skipped = 40  # a resumed run's total
    for it, ok in enumerate([False, False, True, False, False]):
        guard.record(torch.tensor(ok), "critic", it)
    guard.check()  # never 3 in a row
    assert guard.skipped == 44


def test_no_checkpoint_is_written_holding_a_non_finite_tensor():
    state = {"models": {"D.w": torch.tensor([1.0, float("inf")])}, "iter": 3}
    with pytest.raises(RunFailed, match="models.D.w holds non-finite values"):
        ckpt.check_finite(state)
    ckpt.check_finite({"models": {"D.w": torch.ones(2), "n": torch.tensor(3)}})


def test_the_buffers_are_saved_by_one_foreach_copy_into_kept_tensors(monkeypatch):
    """Before an update the guard saves every buffer (it puts them back if the update is
    skipped): one foreach copy into tensors kept from the first update, not a clone per
    buffer per update."""
    s = _setup()
    critic = phases(s)[0]
    real = s.data.to_model(s.data.tensor[:16])
    z = torch.randn(16, s.z_dim)
    update(s, critic, real, z)
    kept = [c.data_ptr() for c in critic.buffers.copies]
    assert len(kept) == len(list(s.models.buffers())) == 9  # 3 BatchNorm layers
    clones, copies = [], []
    clone, foreach_copy = torch.Tensor.clone, torch._foreach_copy_
    monkeypatch.setattr(torch.Tensor, "clone", lambda t, *a, **k: clones.append(1) or clone(
        t, *a, **k))
    monkeypatch.setattr(torch, "_foreach_copy_", lambda *a, **k: copies.append(len(a[0]))
                        or foreach_copy(*a, **k))
    update(s, critic, real, z)
    assert clones == [] and copies == [len(kept)]
    assert [c.data_ptr() for c in critic.buffers.copies] == kept


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_flag_is_false_exactly_when_a_loss_or_gradient_element_is_not_finite(dtype):
    # A large finite half-precision gradient (L1 sum 1e8, past float16's 65504) is finite;
    # one NaN, inf or -inf anywhere, or a non-finite loss, is not.
    params = [torch.nn.Parameter(torch.zeros(100_000, dtype=dtype)),
              torch.nn.Parameter(torch.zeros(3, dtype=dtype))]
    params[0].grad = torch.full((100_000,), 1000.0, dtype=dtype)
    params[1].grad = torch.ones(3, dtype=dtype)
    loss = torch.tensor(1.0)
    assert bool(_all_finite(params, loss))
    for bad in (math.nan, math.inf, -math.inf):
        params[1].grad[2] = bad
        assert not bool(_all_finite(params, loss))
        params[1].grad[2] = 1.0
        assert not bool(_all_finite(params, torch.tensor(bad)))
    params[0].grad = None  # a parameter without a gradient is left out
    assert bool(_all_finite(params, loss))
