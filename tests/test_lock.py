"""One live `ganqp train` per run directory: a second is refused at once (exit 2, naming the
host and pid that hold it) and changes nothing there; a lock left by a dead process (kill -9)
is taken over with a notice, and the partial files the kill left are removed."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest
import torch

from ganqp_cli.training.rundir import LOCK_NAME, RunLock
from tests.conftest import TINY, read_metrics
from tests.test_signals import ARGS, ITERS, launch, wait_for


def test_a_held_directory_is_refused_before_anything_is_written(cli, tmp_path):
    run = tmp_path / "run"
    lock = RunLock(run).acquire()  # held by this (live) process, as a running train holds it
    try:
        r = cli("train", *TINY, f"hydra.run.dir={run}")
    finally:
        lock.release()
    assert r.code == 2 and "Traceback" not in r.err, r
    assert f"host {socket.gethostname()}, pid {os.getpid()}" in r.msg, r
    assert "hydra.run.dir=DIR" in r.msg
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # no .hydra/, no logs


def test_a_lock_file_left_by_a_dead_process_is_taken_over_with_a_notice(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # What a `kill -9` leaves: the holder's record, and no process holding the flock
    (run / LOCK_NAME).write_text(json.dumps({"host": "node17", "pid": 4242424,
                                             "since": "2026-01-01 00:00:00"}) + "\n")
    r = cli("train", *TINY, f"hydra.run.dir={run}")
    assert r.code == 0, r
    assert "node17, pid 4242424" in r.msg and "taking over" in r.msg, r
    assert (run / LOCK_NAME).read_text() == ""  # released at the end: the next run is silent
    lock = RunLock(run).acquire()
    assert lock.takeover_notice() is None
    lock.release()


def test_kill_9_leaves_a_lock_and_partial_files_the_next_run_cleans_up(cli, tmp_path):
    run = tmp_path / "run"
    proc, out = launch(run, "--slow=0.3", overrides=("train.ckpt_every=1",))
    last = run / "checkpoints" / "last.pt"
    wait_for(proc, out, last.is_file, "the first checkpoint")
    # While it runs, a second train on the directory is refused at once
    record = (run / ".hydra" / "overrides.yaml").read_text()
    second = cli("train", *ARGS, "train.ckpt_every=1", f"hydra.run.dir={run}")
    assert second.code == 2 and f"host {socket.gethostname()}, pid {proc.pid}" in second.msg
    assert (run / ".hydra" / "overrides.yaml").read_text() == record

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == proc.pid  # left behind
    # Partial files a kill during a write leaves (save_atomic's and status.json's names)
    partial = [run / "checkpoints" / ".iter_0000002.pt.k9x1y2.tmp",
               run / "checkpoints" / ".last.pt.a1b2c3.tmp", run / f".status.json.{proc.pid}.tmp"]
    for p in partial:
        p.write_bytes(b"half a file")
    k = torch.load(last, weights_only=True)["iter"]

    r = cli("train", *ARGS, "train.ckpt_every=1", f"hydra.run.dir={run}")
    assert r.code == 0 and f"resumed at iter {k}" in r.out, r
    assert f"pid {proc.pid}" in r.msg and "taking over" in r.msg, r
    assert not any(p.exists() for p in partial)
    assert all(f"removed {p}" in r.out for p in partial), r.out
    assert json.loads((run / "status.json").read_text())["status"] == "done"
    # rows logged after the last checkpoint were dropped and redone: each iteration once
    assert [row["iter"] for row in read_metrics(run)] == list(range(1, ITERS + 1))


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_a_run_directory_that_cannot_be_made_is_refused_before_hydra_writes(cli, tmp_path,
                                                                            where):
    (tmp_path / "afile").write_text("not a folder")
    run = tmp_path / "afile" / "run" if where == "file" else "/proc/ganqp_run"
    r = cli("train", *TINY, f"hydra.run.dir={run}")
    assert r.code == 2 and "Traceback" not in r.err and "hydra.run.dir" in r.msg, r
    assert ("is a file" if where == "file" else "not writable") in r.msg, r
