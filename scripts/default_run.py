"""Time the default run, `ganqp train`, and optionally measure the digits FID of its last
checkpoint: the figures of the README's default run and of docs/training.md.

    python scripts/default_run.py                         # wall time and training time
    python scripts/default_run.py --fid                   # + digits FID of the last checkpoint
    python scripts/default_run.py --fid seed=1 res=32     # any `ganqp train` overrides
    python scripts/default_run.py --keep runs/seed0       # keep the run directory

Runs `ganqp train [overrides]` in a fresh process (as a user would) into a temporary run
directory and prints: the machine's load average before the run, the wall time of the whole
command (start-up, data, sample grids and checkpoints included: from the command to the last
grid), the training time (each metrics.jsonl interval's iterations over its it_per_s), the
CPU time the run used (user + system: the wall time of a 1-thread run on an idle machine) and,
with --fid, `ganqp fid ckpt=<run>/checkpoints/last.pt n=2000 fid.extractor=digits` run
afterwards (not in the wall time): the FID and KID of the EMA generator's 2,000 samples
against all 1,797 digits at the run's resolution (the digits extractor sees 16 px either
way). About 2 minutes on this project's 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def training_seconds(metrics: list[dict]) -> float:
    total, prev = 0.0, 0
    for row in metrics:
        if row.get("it_per_s"):
            total += (row["iter"] - prev) / row["it_per_s"]
        prev = row["iter"]
    return total


def cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children: on a loaded machine,
    what a single-threaded run would take alone."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def last_fid(run: Path, n: int) -> dict:
    out = run / "fid_last.json"
    cmd = [sys.executable, "-m", "ganqp_cli", "fid", f"ckpt={run / 'checkpoints' / 'last.pt'}",
           f"n={n}", "fid.extractor=digits", f"out={out}", f"hydra.run.dir={run / 'fid'}"]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ganqp fid failed:\n{done.stderr}")
    return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fid", action="store_true", help="digits FID of the last checkpoint")
    p.add_argument("--fid-n", type=int, default=2000, help="samples for --fid")
    p.add_argument("--keep", type=Path, default=None, help="copy the run directory here")
    p.add_argument("overrides", nargs="*", help="extra `ganqp train` overrides")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ganqp_default_run_") as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "ganqp_cli", "train", *args.overrides,
               f"hydra.run.dir={run}"]
        load = os.getloadavg()
        print("$", " ".join(["ganqp", *cmd[3:-1]]), f"  (load average {load[0]:.2f} "
              f"{load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)", flush=True)
        start = time.perf_counter()
        cpu0 = cpu_seconds()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        metrics = rows(run / "metrics.jsonl")
        print(f"iterations {metrics[-1]['iter']}   wall {wall:.1f} s   "
              f"training {training_seconds(metrics):.1f} s   CPU {cpu:.1f} s", flush=True)
        if args.fid:
            r = last_fid(run, args.fid_n)
            print(f"last checkpoint, digits extractor, {args.fid_n} samples: FID {r['fid']:.4f}"
                  f"   KID {r['kid']:.5f}")
        if args.keep is not None:
            shutil.copytree(run, args.keep, dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
