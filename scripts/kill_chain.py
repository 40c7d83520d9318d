"""kill -9 a digits run K times at random points, resuming it each time with the same
command, and compare the final state with an uninterrupted run: the figures of
docs/reliability.md.

    python scripts/kill_chain.py                  # 6 kills, 400 iterations, ckpt_every=100
    python scripts/kill_chain.py --kills 10 --ckpt-every 20 --seed 3

Every run is `python -m ganqp_cli train` in a fresh process (as a user would start it),
on data=digits res=16 train.batch_size=16 (plus any extra overrides given). For each kill it
prints whether that run took over the lock and removed the partial `.tmp` files the kill
before left, the iteration it reached, the iteration of the checkpoint it left (loaded with
weights_only=True), and whether a lock record and `.tmp` files were left. Then whether the
final checkpoint is bitwise equal to the uninterrupted run's (every tensor: networks, EMA,
optimisers, RNG states) and whether metrics.jsonl holds the same rows. About 3 minutes on 2
CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMING = ("it_per_s", "img_per_s", "elapsed_s")  # wall-clock columns differ between runs


def command(run: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "ganqp_cli", "train", "data=digits", "res=16",
            "train.batch_size=16", f"train.iters={args.iters}", "train.log_every=1",
            f"train.ckpt_every={args.ckpt_every}", "train.sample_every=0", "train.workers=0",
            f"hydra.run.dir={run}", *args.overrides]


def last_iter(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    for line in reversed(path.read_text().splitlines()):
        try:
            return int(json.loads(line)["iter"])
        except (ValueError, KeyError):
            continue  # a torn last line
    return 0


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensors_equal(a: object, b: object) -> bool:
    import torch
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def kill_points(args: argparse.Namespace, rng: random.Random) -> list[int]:
    """K distinct iterations, in order: half at random, half at a checkpoint iteration (the
    kill then lands while that checkpoint is being written, or just after)."""
    every = args.ckpt_every
    at_ckpt = [i for i in range(every, args.iters, every)] if every else []
    points: set[int] = set()
    while len(points) < min(args.kills, args.iters - 1):
        pool = at_ckpt if at_ckpt and len(points) % 2 else range(1, args.iters)
        points.add(rng.choice(pool))
    return sorted(points)


def kill_once(run: Path, n: int, target: int, args: argparse.Namespace,
              rng: random.Random, env: dict) -> dict | None:
    """Start (or resume) the run, kill -9 it once it logged iteration `target` (None if it
    finished first)."""
    log = run.parent / f"run_{n}.log"
    with log.open("w") as f:
        proc = subprocess.Popen(command(run, args), stdout=f, stderr=subprocess.STDOUT,
                                env=env)
        while proc.poll() is None and last_iter(run) < target:
            time.sleep(0.01)
        if proc.poll() is not None:
            return None
        time.sleep(rng.uniform(0, 0.05))  # inside the next iteration, or the checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    said = log.read_text()
    return {"took_over": "taking over" in said, "removed": said.count("removed "),
            "reached": last_iter(run), **state_left(run)}


def state_left(run: Path) -> dict:
    import torch
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)["iter"] if last.is_file() else None
    temps = [p for d in (run, run / "checkpoints") if d.is_dir() for p in d.glob(".*.tmp")]
    lock = (run / "run.lock").read_text().strip() if (run / "run.lock").is_file() else ""
    return {"checkpoint": ckpt, "tmp_left": len(temps), "lock_left": bool(lock)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    p.add_argument("--dir", type=Path, default=None, help="keep the runs here")
    p.add_argument("overrides", nargs="*", help="extra `ganqp train` overrides")
    args = p.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="kill_chain_"))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    ref, run = root / "uninterrupted", root / "killed"
    t0 = time.time()
    subprocess.run(command(ref, args), check=True, capture_output=True, env=env)
    rng, kills = random.Random(args.seed), []
    print(f"{'kill':>4} {'start: took over lock':>21} {'removed .tmp':>12} "
          f"{'killed at iter':>14} {'last.pt iter':>12} {'.tmp left':>9} {'lock left':>9}")
    for n, target in enumerate(kill_points(args, rng), 1):
        done = kill_once(run, n, target, args, rng, env)
        if done is None:
            break
        kills.append(done)
        print(f"{len(kills):>4} {str(done['took_over']):>21} {done['removed']:>12} "
              f"{done['reached']:>14} {str(done['checkpoint']):>12} {done['tmp_left']:>9} "
              f"{str(done['lock_left']):>9}", flush=True)
    final = subprocess.run(command(run, args), capture_output=True, text=True, env=env)
    said = final.stdout + final.stderr
    print(f"final resume: exit {final.returncode}, took over the lock: "
          f"{'taking over' in said}, removed partial files: {said.count('removed ')}")
    import torch
    a, b = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (ref, run))
    same = tensors_equal({k: v for k, v in a.items() if k != "config"},
                         {k: v for k, v in b.items() if k != "config"})
    print(f"{len(kills)} kill -9 + resume, {args.iters} iterations, ckpt_every "
          f"{args.ckpt_every}: final checkpoint bitwise equal to the uninterrupted run: "
          f"{'yes' if same else 'NO'}; metrics.jsonl rows identical: "
          f"{'yes' if rows(ref) == rows(run) else 'NO'} ({len(rows(run))} rows); "
          f"{time.time() - t0:.0f} s; runs in {root}")
    sys.exit(0 if same and rows(ref) == rows(run) and final.returncode == 0 else 1)


if __name__ == "__main__":
    main()
