"""`ganqp` as a launcher would run it, for tests/test_signals.py and tests/test_lock.py.

    python tests/signal_run.py [--slow=S] [--marker=PATH] train key=value ...

--slow=S    sleep S seconds after each training iteration, so that a signal sent once the
            first metrics row appears lands mid-run however fast the machine is;
--paused=P  with --slow: write the iteration's number (1, 2, ...) to P as its pause begins,
            so that a test can send a signal that lands inside an iteration;
--marker=P  install a SIGUSR1 handler before ganqp starts, as submitit does (it requeues the
            job); the handler writes P with what the run directory held when it was called,
            which shows that ganqp called it after writing the checkpoint.

ganqp runs as the console script does (main() reading sys.argv), Ctrl-C handling included.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path


def launcher_handler(marker: Path, run_dir: Path):  # noqa: ANN201 - a signal handler
    def handle(signum: int, frame: object) -> None:
        status = run_dir / "status.json"
        marker.write_text(json.dumps({
            "signum": signum,
            "last_pt": (run_dir / "checkpoints" / "last.pt").is_file(),
            "status": json.loads(status.read_text()) if status.is_file() else None}))
    return handle


def main() -> None:
    args = sys.argv[1:]
    opts = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--")}
    rest = [a for a in args if not a.startswith("--")]
    run_dir = Path(next(a.split("=", 1)[1] for a in rest if a.startswith("hydra.run.dir=")))
    if "--marker" in opts:
        signal.signal(signal.SIGUSR1, launcher_handler(Path(opts["--marker"]), run_dir))
    if "--slow" in opts:
        from ganqp_cli.training import loop
        step, pause = loop.iteration, float(opts["--slow"])
        paused = Path(opts["--paused"]) if "--paused" in opts else None
        count = 0

        def slow_iteration(*a: object, **k: object) -> object:
            nonlocal count
            out = step(*a, **k)
            count += 1
            if paused is not None:
                paused.write_text(str(count))
            time.sleep(pause)
            return out
        loop.iteration = slow_iteration
    from ganqp_cli.cli import main as ganqp
    sys.argv = ["ganqp", *rest]
    ganqp()


if __name__ == "__main__":
    main()
