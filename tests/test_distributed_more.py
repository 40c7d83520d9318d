"""Data-parallel behaviour beyond keeping ranks in sync: gradients are averaged (a mean, not
a sum), and a run resumes with another number of processes. gloo, on the CPU, via torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import TINY, read_metrics
from tests.dist_step import step

ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, cwd: Path, module: bool = True) -> subprocess.CompletedProcess:
    # --standalone picks a free port itself (--master_port=0 hangs on some machines).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           *(["-m", "ganqp_cli"] if module else []), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)


def test_two_processes_average_gradients_to_the_one_process_step(tmp_path):
    """Each rank's loss is the mean over its half of the batch, so the mean of the two ranks'
    gradients is the full batch's gradient: one 2-process step equals one 1-process step
    on the same global batch (a sum would double every gradient)."""
    r = torchrun(str(ROOT / "tests" / "dist_step.py"), str(tmp_path / "two.pt"), cwd=tmp_path,
                 module=False)
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


def resumed_rows(run: Path) -> list[dict]:
    rows = read_metrics(run)
    assert all(v is not None for row in rows for v in row.values())  # finite losses
    return rows


ARGS = [*TINY, "train.batch_size=8", "train.log_every=1", "device=cpu"]


def test_two_process_checkpoint_resumes_in_one_process(cli, tmp_path):
    run = tmp_path / "run"
    r = torchrun("train", *ARGS, "train.iters=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["rng"]) == 2
    r = cli("train", *ARGS, "train.iters=4", f"hydra.run.dir={run}")
    assert r.code == 0 and "resumed at iter 2" in r.out and "cpu x1" in r.out, r
    assert [row["iter"] for row in resumed_rows(run)] == [1, 2, 3, 4]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iter"] == 4 and len(state["rng"]) == 1
    assert state["data"]["consumed"] == 4 * 3  # global batches: 4 iters x (2 critic + 1 G)


def test_one_process_checkpoint_resumes_in_two_processes(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *ARGS, "train.iters=2", f"hydra.run.dir={run}").code == 0
    r = torchrun("train", *ARGS, "train.iters=4", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed at iter 2" in r.stdout and "cpu x2" in r.stdout
    assert "parameters and buffers identical on all 2 ranks" in r.stdout
    assert [row["iter"] for row in resumed_rows(run)] == [1, 2, 3, 4]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iter"] == 4 and len(state["rng"]) == 2
    assert state["data"]["consumed"] == 4 * 3
