"""Rebuilding a trained model from its checkpoint, and `ganqp sample`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn

from ganqp_cli import checkpoint as ckpt
from ganqp_cli.config import make
from ganqp_cli.data import image_grid, is_image_shape
from ganqp_cli.distributed import Dist, device_for
from ganqp_cli.errors import UserError
from ganqp_cli.generate import choose, generate
from ganqp_cli.objectives import Models, Objective
from ganqp_cli.validation import validate_sample


@dataclass
class Trained:
    """A trained run as loaded from a checkpoint."""

    config: DictConfig
    objective: Objective
    models: Models
    G: nn.Module          # the generator to sample from (EMA or raw), eval mode
    shape: tuple[int, ...]
    z_dim: int
    iter: int
    device: torch.device

    def render(self, samples: torch.Tensor, nrow: int | None = None) -> Image.Image:
        if is_image_shape(self.shape):
            return image_grid(samples, nrow)
        return make(self.config.data, "data", res=self.config.res).render(samples, nrow)


def load_trained(path: str, ema: bool = True, device: str = "auto", key: str = "ckpt"
                 ) -> Trained:
    state = ckpt.load(path, key=key)
    cfg = OmegaConf.create(state["config"])
    dev = device_for(device, Dist())
    if "res" not in cfg.objective and "res" in _parameters(cfg.objective):
        cfg.objective.res = int(cfg.res)  # checkpoints from before objectives took `res`
    objective = make(cfg.objective, "objective")
    shape = tuple(state["shape"])
    models = objective.build(make(cfg.arch, "arch"), shape)
    models.load_state_dict(state["models"])
    kept = None
    if state.get("ema") and cfg.train.get("ema", 0) > 0:
        kept = copy.deepcopy(models.G)
        kept.load_state_dict(state["ema"])
    G = choose(models.G, kept, ema)
    models.to(dev).eval()
    G.to(dev).eval().requires_grad_(False)
    return Trained(cfg, objective, models, G, shape, int(state["z_dim"]), int(state["iter"]),
                   dev)


def _parameters(node: DictConfig) -> set[str]:
    """The keyword parameters of the class a `_target_` node names."""
    import inspect

    from hydra.utils import get_class
    return set(inspect.signature(get_class(str(node._target_))).parameters)


def latents(n: int, z_dim: int, seed: int, temperature: float = 1.0) -> torch.Tensor:
    """z ~ N(0, temperature^2 I), drawn on the CPU so a seed means the same z everywhere."""
    return temperature * torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b at fractions t (a column)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolation_latents(rows: int, steps: int, z_dim: int, seed: int, temperature: float
                          ) -> torch.Tensor:
    ends = latents(2 * rows, z_dim, seed, temperature)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    a, b = ends[:rows, None, :], ends[rows:, None, :]
    return slerp(a.expand(-1, steps, -1), b.expand(-1, steps, -1), t.expand(rows, -1, -1)
                 ).reshape(rows * steps, z_dim)


def write_folder(G: nn.Module, n: int, z_dim: int, out: Path, seed: int, temperature: float,
                 device: torch.device, batch: int) -> int:
    """n numbered PNGs (000000.png ...) in `out`, generated batch by batch."""
    out.mkdir(parents=True, exist_ok=True)
    z = latents(n, z_dim, seed, temperature)
    digits = max(6, len(str(n - 1)))
    for i in range(0, n, batch):
        imgs = generate(G, z[i:i + batch], batch, device, uint8=True)
        for j, img in enumerate(imgs):
            arr = img.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(
                out / f"{i + j:0{digits}d}.png")
    return n


def sample_command(cfg: DictConfig) -> dict[str, Any]:
    validate_sample(cfg)
    run = load_trained(cfg.ckpt, ema=cfg.ema, device=str(cfg.device))
    out = Path(cfg.out)
    if cfg.format == "folder":
        if not is_image_shape(run.shape):
            raise UserError("format=folder writes images; this checkpoint models points.")
        write_folder(run.G, cfg.n, run.z_dim, out, cfg.seed, cfg.temperature, run.device,
                     cfg.batch)
        print(f"wrote {cfg.n} samples to {out}/ (iter {run.iter} of {cfg.ckpt})")
        return {"n": cfg.n, "out": str(out)}
    if cfg.interp:
        rows = max(1, cfg.n // cfg.interp_steps)
        z, nrow = interpolation_latents(rows, cfg.interp_steps, run.z_dim, cfg.seed,
                                        cfg.temperature), cfg.interp_steps
    else:
        z, nrow = latents(cfg.n, run.z_dim, cfg.seed, cfg.temperature), cfg.nrow
    samples = generate(run.G, z, cfg.batch, run.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    run.render(samples, nrow or int(math.ceil(math.sqrt(samples.shape[0])))).save(out)
    print(f"wrote a grid of {samples.shape[0]} samples to {out} (iter {run.iter} of {cfg.ckpt})")
    return {"n": samples.shape[0], "out": str(out)}
