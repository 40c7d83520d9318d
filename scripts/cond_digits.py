"""Class-conditional against unconditional on the digits: the figures of docs/training.md's
class-conditional section.

    python scripts/cond_digits.py                               # gan-qp and wgan-gp, 1,000 its
    python scripts/cond_digits.py --objectives gan-qp --iters 500 --grid docs/img/x.png

For each objective, two runs of `experiment=digits-table` (its architecture, batch and
optimisers; `train.iters` from --iters, FID off during training), one plain and one with
`cond=true`, each in a fresh process with `nice -n 10`, one after the other; then
`ganqp fid` of each last checkpoint on `--n` samples with the digits extractor: FID for
both, and for the conditional one also `ifid` and `acc`. Prints a Markdown table with the
load average at the start and the end, and writes the conditional GAN-QP model's class grid
(`ganqp sample`, a row per digit) to --grid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def ganqp(*args: str) -> subprocess.CompletedProcess:
    cmd = ["nice", "-n", "10", sys.executable, "-m", "ganqp_cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: ganqp {' '.join(args)}\n{done.stderr}")
    return done


def measure(run: Path, cond: bool, n: int) -> dict:
    metrics = "[fid,ifid,acc]" if cond else "[fid]"
    out = run / "fid.json"
    ganqp("fid", f"ckpt={run / 'checkpoints' / 'last.pt'}", f"n={n}", "fid.extractor=digits",
          f"fid.metrics={metrics}", f"out={out}")
    return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objectives", default="gan-qp,wgan-gp")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--n", type=int, default=2000, help="samples per evaluation")
    p.add_argument("--grid", default="docs/img/cond_digits.png")
    args = p.parse_args()
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ganqp_cond_digits_") as tmp:
        for objective in args.objectives.split(","):
            got = {}
            for cond in (False, True):
                run = Path(tmp) / f"{objective}-{cond}"
                start = time.perf_counter()
                ganqp("train", "experiment=digits-table", f"objective={objective}",
                      f"cond={str(cond).lower()}", f"train.iters={args.iters}",
                      "train.fid_every=0", "train.sample_every=0", f"hydra.run.dir={run}")
                got[cond] = (measure(run, cond, args.n), time.perf_counter() - start)
                if cond and objective == "gan-qp" and args.grid:
                    ganqp("sample", f"ckpt={run / 'checkpoints' / 'last.pt'}", "n=80",
                          f"out={Path(args.grid).resolve()}")
            (plain, t_plain), (cond_r, t_cond) = got[False], got[True]
            rows.append(f"| {objective} | {plain['fid']:.3f} | {cond_r['fid']:.3f} | "
                        f"{cond_r['ifid']:.3f} | {cond_r['acc']:.3f} | {t_plain:.0f} s | "
                        f"{t_cond:.0f} s |")
            print(rows[-1], flush=True)
    print(f"\n{args.iters} iterations of experiment=digits-table, {args.n} samples, digits "
          f"extractor; load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
          "end\n")
    print("| objective | FID (cond=false) | FID (cond=true) | ifid | acc | wall (false) | "
          "wall (true) |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
