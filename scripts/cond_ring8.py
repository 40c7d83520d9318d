"""One class-conditional run on the ring of 8 Gaussians, measured as
tests/test_cond_ring8.py measures it: the share of samples generated for class k whose
nearest mode is k.

    python scripts/cond_ring8.py gan-qp 200 --seeds 0,1,2,3 objective.opt_d.lr=2e-3 \\
        objective.opt_g.lr=2e-3

The run is the test's: `ganqp train data=ring8 arch=mlp cond=true`, batch 256, one thread
(tests/test_ring8.py's BASE) at each seed, then 312 samples per class from the EMA generator
(z seed 1). The figures of tests/test_cond_ring8.py's comments and docs/training.md come
from this script.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from ganqp_cli.cli import main as ganqp  # noqa: E402
from ganqp_cli.sampling import load_trained  # noqa: E402
from tests.test_cond_ring8 import in_own_mode  # noqa: E402
from tests.test_ring8 import BASE  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("objective")
    p.add_argument("iters", type=int)
    p.add_argument("--seeds", default="0")
    p.add_argument("overrides", nargs="*", help="extra `ganqp train` overrides")
    args = p.parse_args()
    base = [b for b in BASE if not b.startswith("seed=")]
    for seed in args.seeds.split(","):
        with tempfile.TemporaryDirectory(prefix="ganqp_cond_ring8_") as tmp:
            run = Path(tmp) / "run"
            start = time.perf_counter()
            try:
                ganqp(["train", f"objective={args.objective}", *base, f"seed={seed}",
                       "cond=true", f"train.iters={args.iters}", *args.overrides,
                       f"hydra.run.dir={run}", "hydra/job_logging=disabled"])
            except SystemExit as exit_:
                if exit_.code not in (0, None):
                    raise
            seconds = time.perf_counter() - start
            trained = load_trained(str(run / "checkpoints" / "last.pt"), ema=True,
                                   device="cpu")
            share = in_own_mode(trained.G, trained.z_dim)
        print(f"ring8 cond {args.objective} seed {seed}: {share:.3f} in their class's mode, "
              f"{args.iters} iterations, {seconds:.0f} s, overrides "
              f"{' '.join(args.overrides) or 'none'}", flush=True)


if __name__ == "__main__":
    main()
