"""The default `ganqp train` (docs: README's first section): what holds of its grid. On one
machine and build a run is bitwise repeatable, so the README's grid is what this command
prints there; another CPU (other vector instructions, other oneDNN kernels) rounds floats
otherwise and draws other pixels of the same quality."""

from __future__ import annotations

import pytest
import torch

# The default command, shortened: the digits preset (16 px, width 0.25, batch 32, 1 thread;
# 2,500 iterations) for 6 iterations, a grid at 3 and at 6.
SHORT = ["train.iters=6", "train.sample_every=3", "train.ckpt_every=3", "train.log_every=3"]


@pytest.mark.slow
def test_the_default_run_is_bitwise_repeatable_on_one_machine(cli, tmp_path, one_thread):
    runs = [tmp_path / "a", tmp_path / "b"]
    torch.set_num_threads(2)  # the process's count (one_thread gives the session's back)
    for run in runs:
        r = cli("train", *SHORT, f"hydra.run.dir={run}")
        assert r.code == 0, r
    for name in ("iter_0000003.png", "iter_0000006.png"):
        a, b = ((run / "samples" / name).read_bytes() for run in runs)
        assert a == b, name
    sa, sb = (torch.load(run / "checkpoints" / "last.pt", weights_only=True) for run in runs)
    assert sa["config"]["res"] == 16 and sa["config"]["train"]["threads"] == 1
    for part in ("models", "ema"):
        for k, v in sa[part].items():
            assert torch.equal(v, sb[part][k]), (part, k)
    # The preset's 1 thread held for the run only: a sweep's next job in this process
    # starts from the process's own count.
    assert torch.get_num_threads() == 2
