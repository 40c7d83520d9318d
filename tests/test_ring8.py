"""Learning on the standard mode-coverage toy: `data=ring8` (8 Gaussians, std 0.02, on a
circle of radius 2) with `arch=mlp`, each objective through the real `ganqp train` on the CPU.

Each row asserts a bar on 2,500 samples of the EMA generator (as `ganqp sample` draws them)
that the untrained generator (iteration 0: its samples sit near the origin, 0 modes, none
within 3 std of a mode, median distance to the circle 1.84 to 1.93 over seeds 0-3) fails,
and that the trained one passes with a margin measured over seeds 0-3 (float results differ
between CPUs, and a few hundred GAN iterations amplify that into a different trajectory, so
the spread over seeds stands in for the spread over machines):

- coverage rows: at least `modes` modes captured (>= 20 samples within 3 std, as PacGAN and
  VEEGAN count them) and a fraction >= `quality` of the samples within 3 std of a mode, each
  half of the lowest trained value over the seeds (the arithmetic middle between untrained
  and trained);
- rows of objectives that cover no mode in a short run: the median distance of the samples to
  the circle is at most `ring`, the geometric middle between the untrained value (1.84) and
  the highest trained one over the seeds: the generator has learnt where the data lies.
  A longer run that reaches a coverage bar (fgan-reverse-kl) is opt-in (GANQP_LONG_TESTS=1).

The measured values are in docs (objectives.md) and NOTES-tests.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hydra import compose, initialize_config_module

from ganqp_cli import distributed as dist_
from ganqp_cli.data import Ring8
from ganqp_cli.sampling import latents, load_trained
from ganqp_cli.training.setup import Setup, seed_all
from tests.conftest import read_metrics

# The arch's 128-wide MLP, batch 256, one thread (CPU time grows with width^2 x batch).
BASE = ["data=ring8", "arch=mlp", "train.batch_size=256", "device=cpu", "train.threads=1",
        "train.log_every=250", "train.sample_every=0", "train.ckpt_every=0",
        "train.sample_n=16", "seed=0"]
RADIUS, STD = 2.0, 0.02


@dataclass(frozen=True)
class Bar:
    modes: int = 0           # at least this many modes captured
    quality: float = 0.0     # at least this fraction of samples within 3 std of a mode
    ring: float = math.inf   # at most this median distance to the circle

    def met(self, modes: int, quality: float, ring: float) -> bool:
        return modes >= self.modes and quality >= self.quality and ring <= self.ring


def adam(d_lr: float, g_lr: float, betas: tuple[float, float] | None = None) -> list[str]:
    out = [f"objective.opt_d.lr={d_lr}", f"objective.opt_g.lr={g_lr}"]
    if betas is not None:
        out += [f"objective.opt_{x}.betas=[{betas[0]},{betas[1]}]" for x in "dg"]
    return out


# Faster than the image settings on this toy: higher learning rates, and for the objectives
# with one critic step a critic twice as fast as the generator, Adam betas (0, 0.9) (those of
# WGAN-GP and SN-GAN's ResNet setting). The generator oscillates; its EMA is what samples.
FAST = adam(2e-3, 1e-3, (0.0, 0.9))
SLOW = adam(5e-4, 5e-4, (0.0, 0.9))

# objective -> (generator iterations, overrides of its YAML, bar). In the comments: the
# trained (modes, quality) or median ring distance, seed 0 first, then the worst of seeds
# 0-3 (measured on this project's CPU machine).
SETTINGS: dict[str, tuple[int, list[str], Bar]] = {
    "gan-qp": (750, adam(2e-3, 2e-3), Bar(4, 0.21)),             # 8 0.818; 7 0.435
    "gan-qp-l2": (750, adam(2e-3, 2e-3), Bar(4, 0.36)),          # 8 0.796; 8 0.739
    "fgan-gan": (1000, FAST, Bar(4, 0.36)),                      # 8 0.765; 8 0.728
    "fgan-js": (1000, FAST, Bar(4, 0.36)),                       # 8 0.765; 8 0.728
    "fgan-hellinger": (1000, FAST, Bar(2, 0.15)),                # 8 0.786; 3 0.308
    "sgan-sn": (1500, FAST, Bar(4, 0.37)),                       # 8 0.794; 8 0.742
    "lsgan-sn": (1500, FAST, Bar(4, 0.39)),                      # 8 0.795; 8 0.783
    "hinge-sn": (1500, FAST, Bar(4, 0.31)),                      # 8 0.744; 8 0.627
    "wgan-sn": (2000, FAST, Bar(4, 0.39)),                       # 8 0.792; 8 0.792
    # No mode covered in a short run (at most 2 modes, 0.10 at seed 0, 0.01 at others): the
    # samples move from the origin onto the circle.
    "fgan-reverse-kl": (300, SLOW, Bar(ring=0.7)),               # 0.055; 0.281
    "fgan-kl": (100, [], Bar(ring=1.15)),                        # 0.445; 0.725
    "fgan-pearson": (100, [], Bar(ring=1.1)),                    # 0.379; 0.677
    "wgan": (100, adam(5e-4, 5e-4), Bar(ring=1.0)),              # 0.532; 0.589
    "wgan-gp": (100, adam(5e-4, 5e-4, (0.5, 0.9)), Bar(ring=1.25)),  # 0.611; 0.85
}
# Opt-in (GANQP_LONG_TESTS=1): runs long enough to reach coverage bars.
LONG_SETTINGS: dict[str, tuple[int, list[str], Bar]] = {
    "fgan-reverse-kl": (1000, SLOW, Bar(2, 0.07)),               # 7 0.196; 4 0.153
}
# No long row for wgan-gp or fgan-kl: their coverage after 2,000 (wgan-gp, Adam 5e-4 (0.5,
# 0.9)) or 1,000 iterations (fgan-kl, SLOW) depends on the trajectory (wgan-gp 8 modes 0.734 at
# seed 0, 8 / 0.589 at seed 2, 0 modes at seeds 1 and 3; fgan-kl 3 to 4 modes at seeds 0 and
# 3, none at 1 and 2), so no bar holds on every machine.
# Rows of 1,500 iterations and more (30-45 s of CPU each) are opt-in too: every family they
# belong to has a short row that always runs (sgan-sn, lsgan-sn and hinge-sn beside fgan-gan
# and fgan-js, wgan-sn beside wgan and wgan-gp).
# fgan-js's row is opt-in as well: its critic's objective is fgan-gan's plus log 4 (2 JSD
# against 2 JSD - log 4) and its generator's loss is the same, so it takes the same steps
# and measures the same values (above).
LONG_ROWS = {name for name, (iters, _, _) in SETTINGS.items() if iters >= 1500} | {"fgan-js"}
ROWS = [pytest.param(name, *SETTINGS[name], id=name,
                     marks=[pytest.mark.long] if name in LONG_ROWS else [])
        for name in SETTINGS] + [
    pytest.param(name, *row, id=f"{name}-long", marks=pytest.mark.long)
    for name, row in LONG_SETTINGS.items()]


def measure(points: torch.Tensor) -> tuple[int, float, float]:
    """(modes, quality) as Ring8 counts them, and the median distance to the circle."""
    modes, quality = Ring8().coverage(points, min_count=20)
    ring = (points.double().norm(dim=1) - RADIUS).abs().median().item()
    return modes, quality, ring


def train_and_measure(cli, run, objective: str, iters: int,
                      extra: list[str]) -> tuple[int, float, float]:
    """`ganqp train` on the ring, then `measure` on 2,500 samples of its EMA generator."""
    r = cli("train", f"objective={objective}", *BASE, f"train.iters={iters}", *extra,
            f"hydra.run.dir={run}")
    assert r.code == 0, r
    for row in read_metrics(run):  # non-finite values are written as null
        assert row["d_loss"] is not None and row["g_loss"] is not None, row
    trained = load_trained(str(run / "checkpoints" / "last.pt"), ema=True, device="cpu")
    with torch.no_grad():
        points = trained.G(latents(2500, trained.z_dim, seed=1))
    modes, quality, ring = measure(points)
    print(f"\nring8 {objective} {' '.join(extra)}: {modes} modes, {quality:.4f} within 3 std, "
          f"median distance to the circle {ring:.3f}, {iters} iterations")
    return modes, quality, ring


@pytest.mark.slow
@pytest.mark.parametrize("objective, iters, extra, bar", ROWS)
def test_objective_covers_ring8(cli, tmp_path, one_thread, objective, iters, extra, bar):
    got = train_and_measure(cli, tmp_path / "run", objective, iters, extra)
    assert bar.met(*got), (got, bar)


@pytest.mark.parametrize("objective, iters, extra, bar", [
    pytest.param(name, *row, id=name) for name, row in
    [*SETTINGS.items(), *((f"{k}-long", v) for k, v in LONG_SETTINGS.items())]])
def test_untrained_generator_fails_every_bar(objective, iters, extra, bar):
    """Iteration 0 of each row's run: what `ganqp train` builds before its first step,
    whose EMA generator is the network itself."""
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"objective={objective.removesuffix('-long')}",
                                          *BASE, *extra])
    seed_all(cfg.seed)
    s = Setup(cfg, dist_.Dist(), torch.device("cpu"))
    with torch.no_grad():
        points = s.ema(latents(2500, s.z_dim, seed=1))
    modes, quality, ring = measure(points)
    assert (modes, quality) == (0, 0.0) and ring > 1.8
    assert not bar.met(modes, quality, ring)


def test_coverage_of_a_hand_built_point_set():
    """Ring8.coverage against a point set whose coverage is known by construction: modes
    at radius 2 and angles k * 45 degrees, 3 std = 0.06."""
    def around(k: int, n: int, offset: float) -> torch.Tensor:
        centre = RADIUS * torch.tensor([math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)])
        phi = torch.arange(n) * (2 * math.pi / n)
        return centre + offset * torch.stack([phi.cos(), phi.sin()], 1)

    points = torch.cat([
        around(0, 25, 2.5 * STD),   # captured: 25 >= 20 within 3 std
        around(2, 20, 1.5 * STD),   # captured, with exactly 20
        around(5, 25, 2.95 * STD),  # captured, just inside 3 std
        around(1, 19, 0.5 * STD),   # 19 good samples, one too few to capture the mode
        around(6, 30, 3.05 * STD),  # just outside 3 std: neither captured nor good
        torch.zeros(6, 2),          # the centre: 2 from every mode
        torch.full((5, 2), 10.0),   # far away
    ])
    fraction = pytest.approx((25 + 20 + 25 + 19) / 130, abs=1e-7)
    ring8 = Ring8(n=10)
    assert ring8.coverage(points, min_count=20) == (3, fraction)
    assert ring8.coverage(points, min_count=21) == (2, fraction)
    assert ring8.coverage(points, min_count=1) == (4, fraction)
    assert ring8.coverage(points, min_count=26) == (0, fraction)
    assert ring8.coverage(points[-11:]) == (0, 0.0)
