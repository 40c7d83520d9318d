"""One live `ganqp train` per run directory: a second is refused at once (exit 2, naming the
host and pid that hold it) and changes nothing there; a lock left by a dead process (kill -9)
is taken over with a notice, and the partial files the kill left are removed."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import torch

from ganqp_cli.training.rundir import LOCK_NAME, RunLock
from tests.conftest import TINY, read_metrics


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


def test_what_a_kill_9_leaves_is_taken_over_and_cleaned_up(cli, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "train.keep_ckpts=0", f"hydra.run.dir={run}"]
    assert cli("train", *args, "train.iters=2").code == 0
    # What `kill -9` during iteration 4's checkpoint leaves (tests/test_signals.py shows a
    # real run's lock and refusal): the holder's record in run.lock, rows logged after
    # the last checkpoint (a torn one too), and the temporaries of the writes it was doing
    dead = _reaped_pid()
    (run / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead,
                                             "since": "2026-01-01 00:00:00"}) + "\n")
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"iter": 3, "d_loss": 0.0, "g_loss": 0.0}) + '\n{"iter": 4, "d_lo')
    partial = [run / "checkpoints" / ".iter_0000004.pt.k9x1y2.tmp",
               run / "checkpoints" / ".last.pt.a1b2c3.tmp", run / f".status.json.{dead}.tmp"]
    for p in partial:
        p.write_bytes(b"half a file")

    r = cli("train", *args, "train.iters=4")
    assert r.code == 0 and "resumed at iter 2" in r.out, r
    assert f"pid {dead}" in r.msg and "taking over" in r.msg, r
    assert not any(p.exists() for p in partial)
    assert all(f"removed {p}" in r.out for p in partial), r.out
    assert json.loads((run / "status.json").read_text())["status"] == "done"
    assert [row["iter"] for row in read_metrics(run)] == [2, 4]  # each logged once
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iter"] == 4


def test_rows_of_a_run_killed_before_its_first_checkpoint_are_redone_once(cli, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"iter": i, "d_loss": 0.0, "g_loss": 0.0}) + "\n" for i in (2, 4)))
    (run / "checkpoints" / ".last.pt.x1y2z3.tmp").write_bytes(b"the first checkpoint, half")
    r = cli("train", *TINY, f"hydra.run.dir={run}")
    assert r.code == 0 and "resumed" not in r.out, r  # nothing to resume: a fresh start
    assert [row["iter"] for row in read_metrics(run)] == [2, 4]
    assert all(row["d_loss"] != 0.0 for row in read_metrics(run))  # this run's rows


def _reaped_pid() -> int:
    """The pid of a process that has exited and been reaped: one no process holds now."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_a_run_directory_that_cannot_be_made_is_refused_before_hydra_writes(cli, tmp_path,
                                                                            where):
    (tmp_path / "afile").write_text("not a folder")
    run = tmp_path / "afile" / "run" if where == "file" else "/proc/ganqp_run"
    r = cli("train", *TINY, f"hydra.run.dir={run}")
    assert r.code == 2 and "Traceback" not in r.err and "hydra.run.dir" in r.msg, r
    assert ("is a file" if where == "file" else "not writable") in r.msg, r
