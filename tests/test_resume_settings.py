"""A resumed run trains with the hyperparameters it is given, and keeps the optimiser's
state (moments, step counts) from the checkpoint."""

from __future__ import annotations

import torch

from tests.conftest import TINY


def test_resume_applies_a_new_learning_rate_and_keeps_the_moments(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *TINY, "train.iters=2", f"hydra.run.dir={run}").code == 0
    first = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    r = cli("train", *TINY, "train.iters=3", "objective.opt_d.lr=1e-3",
            "objective.opt_g.lr=5e-4", f"hydra.run.dir={run}")
    assert r.code == 0, r
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["opt_d"]["param_groups"][0]["lr"] == 1e-3
    assert last["opt_g"]["param_groups"][0]["lr"] == 5e-4
    assert first["opt_d"]["param_groups"][0]["lr"] == 2e-4
    # Adam's step counts went on from the checkpoint's (2 critic steps per iteration).
    steps = [float(s["step"]) for s in last["opt_d"]["state"].values()]
    assert steps and all(s == 6 for s in steps)
