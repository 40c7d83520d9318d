"""Data-parallel behaviour beyond keeping ranks in sync: gradients are averaged (a mean, not
a sum). gloo, on the CPU, via torchrun. (Resuming on another number of processes:
test_parallel.py.)"""

from __future__ import annotations

import torch

from tests.conftest import ROOT, torchrun
from tests.dist_step import step


def test_two_processes_average_gradients_to_the_one_process_step(tmp_path):
    """Each rank's loss is the mean over its half of the batch, so the mean of the two ranks'
    gradients is the full batch's gradient: one 2-process step equals one 1-process step
    on the same global batch (a sum would double every gradient)."""
    r = torchrun(str(tmp_path / "two.pt"), cwd=tmp_path,
                 script=str(ROOT / "tests" / "dist_step.py"))
    assert r.returncode == 0, r.stderr[-3000:]
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    one = step(None)
    for part in ("d_grad", "d_param", "g_grad", "g_param"):
        assert one[part].keys() == two[part].keys() and one[part]
        for k in one[part]:
            torch.testing.assert_close(two[part][k], one[part][k], rtol=1e-5, atol=1e-7,
                                       msg=f"{part} {k}")
    # The check has power: the gradients are far from zero, so a sum (2x) would fail it.
    for part in ("d_grad", "g_grad"):
        grads = torch.cat([g.flatten() for g in one[part].values()])
        assert grads.abs().max() > 1e-3
