"""Short CPU training runs of the encoder models, shared by test_encoders and
test_reconstruct (each trained once per session), and their held-out measurements."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganqp_cli.config import make
from ganqp_cli.objectives.encoders import pearson
from ganqp_cli.reconstruct import decode, encode, load_items, reconstruction_errors, with_split
from ganqp_cli.sampling import latents, load_trained

# Digits at 16 px with 10% held out, tiny networks, z_dim 16, and a learning rate of 1e-3
# (the references' 1e-4 / 2e-4 need thousands of iterations) so a few hundred iterations
# learn a usable encoder.
COMMON = ["res=16", "arch.width=0.125", "arch.d_norm=bn", "arch.z_dim=16", "train.batch_size=32",
          "data.holdout=0.1", "objective.opt_d.lr=1e-3", "objective.opt_g.lr=1e-3",
          "train.log_every=100", "train.sample_every=0", "train.ckpt_every=0",
          "train.workers=0"]
RUNS = {
    "o-gan": ["objective=o-gan", "train.iters=400"],
    "o-gan-sgan": ["objective=o-gan", "objective.base=sgan", "train.iters=400"],
    "o-gan-hinge": ["objective=o-gan", "objective.base=hinge", "train.iters=400"],
    "bigan-qp": ["objective=bigan-qp", "objective.hidden=64", "train.iters=500"],
}
_done: dict[str, Path] = {}


def trained(name: str, factory: pytest.TempPathFactory) -> Path:
    """The checkpoint of run `name`, trained through the real CLI on first use."""
    if name not in _done:
        from ganqp_cli.cli import main
        run = factory.mktemp(name)
        try:
            main(["train", *COMMON, *RUNS[name], f"hydra.run.dir={run}"])
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"training {name} failed with {exit_.code}"
        _done[name] = run / "checkpoints" / "last.pt"
    return _done[name]


def heldout_images(ckpt: Path) -> torch.Tensor:
    run = load_trained(str(ckpt))
    data = make(with_split(run.config.data, "heldout"), "data", res=run.shape[-1])
    return load_items(data, list(range(len(data))))


@torch.no_grad()
def measure(ckpt: Path) -> dict[str, float]:
    """Held-out reconstruction error, its other-image baseline, and rho(z, E(G(z)))."""
    run = load_trained(str(ckpt))
    x = heldout_images(ckpt)
    x_hat = decode(run, encode(run, x), run.objective.default_temperature)
    own, other = reconstruction_errors(x, x_hat)
    z = latents(1000, run.z_dim, seed=123)
    rho = pearson(z, run.models.encoder(run.G(z))).mean().item()
    return {"heldout": x.shape[0], "error": own, "baseline": other, "ratio": own / other,
            "rho": rho}
