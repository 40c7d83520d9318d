"""How a process that joined a gloo process group ends: without the interpreter's
finalization. A gloo worker thread may still be releasing the last barrier's work, whose
earlier collectives hold tensors owned by Python; their release takes the GIL, which a
finalizing interpreter refuses by ending the thread, and C++ then ends the process with
"terminate called without an active exception" (SIGABRT; seen on rank 1 in about 1 of 16
runs of 2 ranks on 2 busy cores, backtrace ProcessGroupGloo::runLoop -> ~AsyncBarrierWork
-> decref_pyobject -> take_gil -> pthread_exit). The atexit hooks (trackers, logging) run
first, as at a normal exit; only the finalization is skipped. No torch import here: the
`ganqp` command decides with it before knowing whether torch was loaded."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn


def exit_before_finalizing(code: int | str | None) -> NoReturn:
    """Leave with sys.exit(code)'s status and message, atexit hooks run, no finalization."""
    if isinstance(code, str):  # what sys.exit("message") prints, with status 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more can be said
            pass
    os._exit(code or 0)


def run_as_worker(fn: Callable[..., Any], *args: Any) -> NoReturn:
    """Call fn(*args) as a torchrun worker's whole program: its return or sys.exit ends
    the process through exit_before_finalizing. Another exception propagates as usual (its
    traceback matters more than the exit race)."""
    try:
        fn(*args)
    except SystemExit as exit_:
        exit_before_finalizing(exit_.code)
    exit_before_finalizing(0)
