"""One ring-of-8-Gaussians run, measured as tests/test_ring8.py measures it: modes captured
and the fraction of samples within 3 std of a mode, for any objective, budget and settings.

    python scripts/ring8_run.py gan-qp 2000                       # the YAML's own settings
    python scripts/ring8_run.py wgan-gp 1000 objective.opt_d.lr=5e-4 objective.opt_g.lr=5e-4 \\
        'objective.opt_d.betas=[0.5,0.9]' 'objective.opt_g.betas=[0.5,0.9]'

The run is the test's: `ganqp train data=ring8 arch=mlp`, batch 256, seed 0, one thread
(tests/test_ring8.py's BASE), then 2,500 points from the EMA generator (z seed 1). Figures
of docs/objectives.md that are not the test's own rows come from this script.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from ganqp_cli.cli import main as ganqp  # noqa: E402
from ganqp_cli.data import Ring8  # noqa: E402
from ganqp_cli.sampling import latents, load_trained  # noqa: E402
from tests.test_ring8 import BASE  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("objective")
    p.add_argument("iters", type=int)
    p.add_argument("overrides", nargs="*", help="extra `ganqp train` overrides")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ganqp_ring8_") as tmp:
        run = Path(tmp) / "run"
        ganqp(["train", f"objective={args.objective}", *BASE, f"train.iters={args.iters}",
               *args.overrides, f"hydra.run.dir={run}"])
        trained = load_trained(str(run / "checkpoints" / "last.pt"), ema=True, device="cpu")
        with torch.no_grad():
            points = trained.G(latents(2500, trained.z_dim, seed=1))
    modes, quality = Ring8().coverage(points, min_count=20)
    print(f"ring8 {args.objective}: {modes} modes, {quality:.4f} within 3 std, "
          f"{args.iters} iterations, overrides {' '.join(args.overrides) or 'none'}")


if __name__ == "__main__":
    main()
