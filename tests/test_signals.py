"""Stop signals on real `ganqp train` processes: SIGTERM, SIGINT and SIGUSR1 (what SLURM,
torchrun, Ctrl-C and submitit send) finish the iteration, write checkpoints/last.pt, set
status.json `interrupted` and exit 128+N; the same command then resumes to a final state
bitwise equal to an uninterrupted run's. A second Ctrl-C aborts at once; a launcher's own
SIGUSR1 handler runs after the checkpoint; under torchrun both ranks stop together.

The runs go through tests/signal_run.py, which slows each iteration down so that a signal
sent once the first metrics row exists lands mid-run on any machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganqp_cli.cli import main
from tests.conftest import ROOT, assert_same_state, read_metrics

ITERS = 12
ARGS = ["res=16", "arch.width=0.125", "train.batch_size=16", f"train.iters={ITERS}",
        "train.log_every=1", "train.sample_every=0", "train.ckpt_every=1000",
        "train.keep_ckpts=0", "train.sample_n=4", "train.workers=0"]
TIMING = ("it_per_s", "img_per_s", "elapsed_s")  # wall-clock columns differ between runs


def launch(run: Path, *opts: str, overrides: tuple[str, ...] = (), torchrun: bool = False
           ) -> tuple[subprocess.Popen, Path]:
    """Start `ganqp train ARGS overrides` on `run` through tests/signal_run.py `opts`, in
    its own session; (process, its output file)."""
    out = run.parent / f"{run.name}.out"
    script = [str(ROOT / "tests" / "signal_run.py"), *opts, "train", *ARGS, *overrides,
              f"hydra.run.dir={run}"]
    if torchrun:
        script.append("train.batch_size=8")
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--standalone", *script] if torchrun else [sys.executable, *script])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with out.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=run.parent,
                                env=env, start_new_session=True)
    return proc, out


def wait_for(proc: subprocess.Popen, out: Path, ready, what: str, timeout: float = 180) -> None:
    """Poll until `ready()`; fail (killing the run) if it exits or `timeout` passes first."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
            pytest.fail(f"run ended or timed out before {what}:\n{out.read_text()[-3000:]}")
        time.sleep(0.02)


def training(run: Path):
    path = run / "metrics.jsonl"
    return lambda: path.is_file() and path.read_text().count("\n") >= 1


def in_process(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted-then-resumed one must equal."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert in_process("train", *ARGS, f"hydra.run.dir={run}") == 0
    return run


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run)]


def load(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1],
                         ids=["SIGTERM", "SIGINT", "SIGUSR1"])
def test_a_signal_checkpoints_the_iteration_and_the_run_resumes_bitwise(
        cli, tmp_path, reference, sig):
    run, marker = tmp_path / "run", tmp_path / "launcher_handler.json"
    # SIGUSR1 as submitit sends it: the launcher's handler (which would requeue) is already
    # installed when ganqp starts.
    opts = ["--slow=0.4"] + ([f"--marker={marker}"] if sig == signal.SIGUSR1 else [])
    proc, out = launch(run, *opts)
    wait_for(proc, out, training(run), "training started")
    # Meanwhile a second `ganqp train` on the directory is refused, changing nothing there
    record = (run / ".hydra" / "overrides.yaml").read_text()
    second = cli("train", *ARGS, f"hydra.run.dir={run}")
    assert second.code == 2 and "Traceback" not in second.err, second
    assert f"host {socket.gethostname()}, pid {proc.pid}" in second.msg, second
    assert (run / ".hydra" / "overrides.yaml").read_text() == record
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=120) == 128 + sig, out.read_text()[-3000:]

    status = json.loads((run / "status.json").read_text())
    k = status["iter"]
    assert status["status"] == "interrupted" and status["signal"] == sig.name, status
    assert 1 <= k < ITERS, status
    assert load(run)["iter"] == k  # the iteration reached, not the last scheduled one
    assert [r["iter"] for r in read_metrics(run)] == list(range(1, k + 1))
    text = out.read_text()
    assert f"{sig.name} received" in text and f"stopped at iteration {k}" in text
    assert "Traceback" not in text
    assert (run / "run.lock").read_text() == ""  # released: the next run takes it silently
    if sig == signal.SIGUSR1:
        called = json.loads(marker.read_text())
        assert called["signum"] == sig and called["last_pt"], called  # after the checkpoint
        assert called["status"]["status"] == "interrupted" and called["status"]["iter"] == k

    r = cli("train", *ARGS, f"hydra.run.dir={run}")  # the same command resumes
    assert r.code == 0 and f"resumed at iter {k}" in r.out, r
    assert "taking over" not in r.err
    assert json.loads((run / "status.json").read_text())["status"] == "done"
    assert_same_state(load(reference), load(run))
    assert rows(run) == rows(reference)


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    run, paused = tmp_path / "run", tmp_path / "paused"
    # Both SIGINTs land in iteration 2's pause of 2 s (sent once the pause has begun: one
    # sent as soon as row 1 exists can land before iteration 2, and the run then stops).
    proc, out = launch(run, "--slow=2.0", f"--paused={paused}")
    wait_for(proc, out, lambda: paused.is_file() and paused.read_text() == "2",
             "iteration 2's pause")
    os.kill(proc.pid, signal.SIGINT)
    wait_for(proc, out, lambda: "SIGINT received" in out.read_text(), "the first SIGINT")
    os.kill(proc.pid, signal.SIGINT)  # while that iteration still has >= 1 s to go
    assert proc.wait(timeout=60) == 130
    text = out.read_text()
    assert "ganqp: aborted (Ctrl-C)" in text and "Traceback" not in text, text[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["aborted"] is True, status
    # aborted inside the iteration: not finished, not logged, not checkpointed
    assert not (run / "checkpoints" / "last.pt").exists()
    assert len(read_metrics(run)) == status["iter"] == 1 and "stopped at iteration" not in text


def test_ctrl_c_while_the_command_exits_ends_it_at_once_without_a_traceback(tmp_path):
    """The second Ctrl-C of a stopped run can come while the interpreter exits, inside an
    atexit hook (torch registers some): exit 130 at once, with what was printed kept."""
    code = ("import atexit, os, signal, sys, time\n"
            "from ganqp_cli.cli import main\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(60)))\n"
            "sys.argv = ['ganqp', '--help']\n"
            "main()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 130 and time.time() - start < 50, proc
    assert "Traceback" not in proc.stderr and "ganqp: aborted (Ctrl-C)" in proc.stderr, proc
    assert "usage: ganqp <command>" in proc.stdout  # printed before, and not lost


@pytest.mark.slow
def test_sigterm_to_a_torchrun_group_stops_both_ranks_after_the_same_iteration(tmp_path):
    run = tmp_path / "run"
    proc, out = launch(run, "--slow=0.3", torchrun=True)
    wait_for(proc, out, training(run), "training started")
    os.killpg(proc.pid, signal.SIGTERM)  # what SLURM does: the whole job, agent and ranks
    proc.wait(timeout=120)
    text = out.read_text()
    status = json.loads((run / "status.json").read_text())
    k = status["iter"]
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM", text[-3000:]
    assert 1 <= k < ITERS
    state = load(run)
    # One checkpoint at iteration k, written with both ranks (every rank's RNG state in it)
    assert state["iter"] == k and len(state["rng"]) == 2
    assert state["data"]["consumed"] == k * 3  # each rank drew 3 batches per iteration
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
    assert [r["iter"] for r in read_metrics(run)] == list(range(1, k + 1))
    assert text.count(f"stopped at iteration {k}") == 1
    # torchrun's agent prints its own traceback for the signal it got; ganqp prints none
    assert f"ganqp_cli{os.sep}" not in text, text[-3000:]


@pytest.mark.parametrize("args", [["--help"], ["train", "--cfg", "job"]],
                         ids=["usage", "hydra-print"])
def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path, args):
    """`ganqp --help | head -1`: SIGPIPE, not a BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    read, write = os.pipe()
    os.close(read)  # the reader has gone before ganqp writes a byte
    proc = subprocess.run([sys.executable, "-m", "ganqp_cli", *args], stdout=write,
                          stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env, timeout=120)
    os.close(write)
    assert proc.returncode == -signal.SIGPIPE and proc.stderr == "", proc.stderr[-2000:]


def test_every_stop_signal_sets_the_request_and_its_exit_code():
    """In-process, for the signals no subprocess test sends (SIGHUP, SIGUSR2): each is turned
    into a stop request with exit 128 + its number, and the previous handlers come back."""
    from ganqp_cli.training.signals import HANDLED, StopSignals
    before = {s: signal.getsignal(s) for s in HANDLED}
    for sig in (signal.SIGHUP, signal.SIGUSR2, signal.SIGTERM):
        with StopSignals() as stop:
            assert not stop.should_stop()
            os.kill(os.getpid(), sig)
            assert stop.should_stop() and stop.requested == sig
            assert stop.exit_code() == 128 + sig
    assert {s: signal.getsignal(s) for s in HANDLED} == before
