"""`ganqp` as a launcher would run it, for tests/test_signals.py and tests/test_lock.py.

    python tests/signal_run.py [--slow=S] [--marker=PATH] train key=value ...

--slow=S    sleep S seconds after each training iteration, so that a signal sent once the
            first metrics row appears lands mid-run however fast the machine is;
--marker=P  install a SIGUSR1 handler before ganqp starts, as submitit does (it requeues the
            job); the handler writes P with what the run directory held when it was called,
            which shows that ganqp called it after writing the checkpoint.
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

        def slow_iteration(*a: object, **k: object) -> object:
            out = step(*a, **k)
            time.sleep(pause)
            return out
        loop.iteration = slow_iteration
    from ganqp_cli.cli import main as ganqp
    ganqp(rest)


if __name__ == "__main__":
    main()
