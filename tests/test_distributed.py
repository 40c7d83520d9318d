"""Data-parallel training with 2 gloo processes on the CPU (torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from tests.conftest import TINY, read_metrics


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", "-m", "ganqp_cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)


def test_two_processes_share_one_run_directory_stay_in_sync_and_resume(tmp_path):
    args = [*TINY, "train.batch_size=8", "train.log_every=1"]
    r = torchrun("train", *args, "train.iters=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs  # rank 0 chose the directory and rank 1 used it
    run = runs[0]
    assert (run / ".hydra" / "config.yaml").is_file()
    assert "parameters and buffers identical on all 2 ranks" in r.stdout and "cpu x2" in r.stdout

    r = torchrun("train", *args, "train.iters=4", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed at iter 2" in r.stdout
    assert "parameters and buffers identical on all 2 ranks" in r.stdout
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [1, 2, 3, 4]
    assert all(v is not None for row in rows for v in row.values())  # finite losses
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert len(state["rng"]) == 2 and state["iter"] == 4
    assert state["data"]["consumed"] == 4 * 3  # batches per rank: 4 iters x (2 critic + 1 G)
