"""The installed `ganqp` command: sub-commands, Hydra flags, exit status 2 without traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import TINY

GANQP = shutil.which("ganqp")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [GANQP, *args] if GANQP else [sys.executable, "-m", "ganqp_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_help_lists_the_subcommands():
    r = run("--help")
    assert r.returncode == 0
    for command in ("train", "sample"):
        assert f"\n  {command} " in r.stdout


def test_module_entry_point_and_cfg_job():
    r = subprocess.run([sys.executable, "-m", "ganqp_cli", "train", "--cfg", "job",
                        "objective=gan-qp-l2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "distance: l2" in r.stdout and "d_steps: 2" in r.stdout


def test_command_help_shows_groups():
    r = run("train", "--help")
    assert r.returncode == 0
    assert "objective:" in r.stdout and "gan-qp-l2" in r.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["train", "objective=nope"], ["objective=nope", "gan-qp-l2"]),
    (["train", "res=100"], ["res=100", "power of two"]),
    (["train", "data=folder"], ["data.root"]),
    (["bogus"], ["bogus", "train"]),
])
def test_bad_input_exits_2_with_one_paragraph(args, words, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    msg = " ".join(r.stderr.split())
    for word in words:
        assert word in msg
    assert not any(tmp_path.iterdir())  # nothing written for a refused run


def test_multirun_sweeps_every_job(tmp_path):
    r = run("train", "-m", *TINY, "train.iters=2", "objective=gan-qp,gan-qp-l2",
            f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    done = sorted(p.parent.name for p in tmp_path.glob("*/checkpoints/last.pt"))
    assert len(done) == 2
