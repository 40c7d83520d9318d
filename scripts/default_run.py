"""Time the default run, `ganqp train`, and optionally measure its digits FID: the figures
of the README's default run and of docs/training.md.

    python scripts/default_run.py                         # wall time and training time
    python scripts/default_run.py --fid                   # + digits FID on 2,000 samples
    python scripts/default_run.py --fid seed=1 arch.d_norm=none   # any `ganqp train` overrides

Runs `ganqp train [overrides]` in a fresh process (as a user would) into a temporary run
directory and prints: the wall time of the whole command (start-up, data, sampling,
checkpoints and FID included), the training time (each metrics.jsonl interval's iterations
over its it_per_s, which excludes FID evaluations) and, with --fid
(`train.fid_every=1000 train.fid_n=2000 fid.extractor=digits`, so 3 evaluations), the
FID of the last iteration and the best one. About 3.5 minutes on this project's 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FID = ["train.fid_every=1000", "train.fid_n=2000", "fid.extractor=digits"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def training_seconds(metrics: list[dict]) -> float:
    total, prev = 0.0, 0
    for row in metrics:
        if row.get("it_per_s"):
            total += (row["iter"] - prev) / row["it_per_s"]
        prev = row["iter"]
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fid", action="store_true", help="FID every 1,000 iterations (digits)")
    p.add_argument("overrides", nargs="*", help="extra `ganqp train` overrides")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ganqp_default_run_") as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "ganqp_cli", "train", *(FID if args.fid else []),
               *args.overrides, f"hydra.run.dir={run}"]
        print("$", " ".join(["ganqp", *cmd[3:-1]]), flush=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        metrics = rows(run / "metrics.jsonl")
        print(f"iterations {metrics[-1]['iter']}   wall {wall:.1f} s   "
              f"training {training_seconds(metrics):.1f} s")
        fids = rows(run / "fid.jsonl")
        if fids:
            best = min(fids, key=lambda r: r["fid"])
            print(f"FID ({fids[-1]['extractor']}, {fids[-1]['n']} samples) at iteration "
                  f"{fids[-1]['iter']}: {fids[-1]['fid']:.4f}   best {best['fid']:.4f} "
                  f"at {best['iter']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
