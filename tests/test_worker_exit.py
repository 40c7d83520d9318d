"""A torchrun worker's exit (worker_exit.exit_before_finalizing, run_as_worker): the exit
status and the atexit hooks (trackers, logging) as at a normal exit, the interpreter's
finalization skipped (a gloo thread releasing the last barrier's work aborted a finalizing
interpreter: SIGABRT on rank 1 in about 1 of 16 runs on 2 busy cores)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def worker(tmp_path: Path, code: str, end: str = "exit_before_finalizing") -> (
        subprocess.CompletedProcess):
    script = textwrap.dedent(f"""
        import atexit, sys
        sys.path.insert(0, {str(ROOT)!r})
        from ganqp_cli.worker_exit import exit_before_finalizing, run_as_worker
        atexit.register(lambda: open({str(tmp_path / "atexit")!r}, "w").write("ran"))
        class Teardown:  # released only when the interpreter clears this module
            def __del__(self, open=open):  # bound now: teardown clears the builtins
                open({str(tmp_path / "teardown")!r}, "w").write("ran")
        keep = Teardown()
        print("kept on stdout", end="")
        {end}({code})
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("code", "status"), [("0", 0), ("2", 2), ("None", 0)])
def test_the_status_and_the_atexit_hooks_are_kept(tmp_path, code, status):
    r = worker(tmp_path, code)
    assert r.returncode == status, r.stderr
    assert r.stdout == "kept on stdout"  # buffered output flushed before os._exit
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_message_is_printed_with_status_1_as_sys_exit_does(tmp_path):
    r = worker(tmp_path, repr("rank 1: stopped"))
    assert r.returncode == 1 and r.stderr.strip() == "rank 1: stopped"


def test_the_interpreter_teardown_is_skipped(tmp_path):
    r = worker(tmp_path, "0")
    assert r.returncode == 0 and not (tmp_path / "teardown").exists()
    r = worker(tmp_path, "0", end="sys.exit")  # the control: a normal exit tears down
    assert r.returncode == 0 and (tmp_path / "teardown").read_text() == "ran"


@pytest.mark.parametrize(("body", "status"), [("None", 0), ("sys.exit(2)", 2),
                                              ("sys.exit('stopped')", 1)])
def test_run_as_worker_leaves_with_the_body_s_status_and_no_teardown(tmp_path, body, status):
    r = worker(tmp_path, f"lambda: {body}", end="run_as_worker")
    assert r.returncode == status, r.stderr
    assert (tmp_path / "atexit").read_text() == "ran" and not (tmp_path / "teardown").exists()
