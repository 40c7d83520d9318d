"""Rebuilding a trained model from its checkpoint, and `ganqp sample`.

A class-conditional model (trained with cond=true) samples by class: by default a grid with
one row per class (the first 16; `classes=[...]` picks them) whose columns share one z,
`class=K` for one class, a folder with a `dataset.json` of the labels (StyleGAN2-ADA's form),
interpolation rows within a class.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn

from ganqp_cli import checkpoint as ckpt
from ganqp_cli.classes import class_grid, class_index, draw_labels, grid_rows
from ganqp_cli.config import make
from ganqp_cli.data import image_grid, is_image_shape
from ganqp_cli.distributed import Dist, device_for
from ganqp_cli.errors import UserError
from ganqp_cli.generate import choose, generate
from ganqp_cli.networks import ConditionalArch
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
    classes: list[str] | None = None     # a class-conditional model's class names
    class_counts: list[int] | None = None  # its training data's items per class

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
    arch, classes = make(cfg.arch, "arch"), state.get("classes")
    if classes is not None:
        arch = ConditionalArch(arch, len(classes))
    models = objective.build(arch, shape)
    models.load_state_dict(state["models"])
    kept = None
    if state.get("ema") and cfg.train.get("ema", 0) > 0:
        kept = copy.deepcopy(models.G)
        kept.load_state_dict(state["ema"])
    G = choose(models.G, kept, ema)
    models.to(dev).eval()
    G.to(dev).eval().requires_grad_(False)
    return Trained(cfg, objective, models, G, shape, int(state["z_dim"]), int(state["iter"]),
                   dev, classes, state.get("class_counts"))


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
                 device: torch.device, batch: int, labels: torch.Tensor | None = None,
                 classes: list[str] | None = None) -> int:
    """n numbered PNGs (000000.png ...) in `out`, generated batch by batch; with `labels`
    (a conditional G), also StyleGAN2-ADA's dataset.json naming each file's label, and the
    model's `classes` in it (read back by data.labels, so the folder's classes are the
    model's even where a class drew no sample)."""
    out.mkdir(parents=True, exist_ok=True)
    z = latents(n, z_dim, seed, temperature)
    digits = max(6, len(str(n - 1)))
    names = [f"{i:0{digits}d}.png" for i in range(n)]
    for i in range(0, n, batch):
        y = None if labels is None else labels[i:i + batch]
        imgs = generate(G, z[i:i + batch], batch, device, uint8=True, labels=y)
        for j, img in enumerate(imgs):
            arr = img.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(out / names[i + j])
    if labels is not None:
        doc: dict[str, Any] = {"labels": [[name, int(k)] for name, k in
                                          zip(names, labels.tolist(), strict=True)]}
        if classes is not None:
            doc["classes"] = [str(c) for c in classes]
        (out / "dataset.json").write_text(json.dumps(doc) + "\n")
    return n


def chosen_classes(cfg: DictConfig, run: Trained) -> list[int] | None:
    """The labels `class=` / `classes=` ask for (None: the default); refused for a model
    without classes."""
    one, many = cfg.get("class"), cfg.get("classes")
    if one is None and many is None:
        return None
    key = "class" if one is not None else "classes"
    if run.classes is None:
        raise UserError(f"{key}={one if one is not None else many}: ckpt={cfg.ckpt} is not "
                        "class-conditional (trained with cond=false); leave out class= and "
                        "classes=.")
    if one is not None and many is not None:
        raise UserError("pass class=K (one class) or classes=[...] (several), not both.")
    if one is not None:
        return [class_index(run.classes, one, "class")]
    return grid_rows(run.classes, OmegaConf.to_container(many)
                     if not isinstance(many, int | str) else many)


def folder_labels(cfg: DictConfig, run: Trained, chosen: list[int] | None) -> torch.Tensor:
    """Labels of a folder of n samples: drawn with the training data's class frequencies,
    among the chosen classes when given (seeded by `seed`)."""
    counts = run.class_counts or [1] * len(run.classes)
    if chosen is not None:
        counts = [counts[k] if k in chosen else 0 for k in range(len(counts))]
        if not any(counts):  # chosen classes that had no training items: uniform
            counts = [1 if k in chosen else 0 for k in range(len(counts))]
    return draw_labels(int(cfg.n), counts, len(run.classes), int(cfg.seed))


def grid_codes(cfg: DictConfig, run: Trained, chosen: list[int] | None
               ) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """(z, labels, images per row) of `ganqp sample`'s grid: interpolation rows (within a
    class), n samples of one class, a row per class, or (unconditional) n samples."""
    if cfg.interp:
        rows = max(1, cfg.n // cfg.interp_steps)
        z = interpolation_latents(rows, cfg.interp_steps, run.z_dim, cfg.seed, cfg.temperature)
        labels = None
        if run.classes is not None:
            kinds = chosen or grid_rows(run.classes)
            labels = torch.tensor([kinds[r % len(kinds)] for r in range(rows)]
                                  ).repeat_interleave(cfg.interp_steps)
        return z, labels, cfg.interp_steps
    z = latents(cfg.n, run.z_dim, cfg.seed, cfg.temperature)
    if cfg.get("class") is not None:  # n samples of the one class
        return z, torch.full((cfg.n,), chosen[0], dtype=torch.int64), cfg.nrow
    z, labels, cols = class_grid(z, run.classes, chosen)
    return z, labels, cfg.nrow or cols


def sample_command(cfg: DictConfig) -> dict[str, Any]:
    validate_sample(cfg)
    run = load_trained(cfg.ckpt, ema=cfg.ema, device=str(cfg.device))
    chosen = chosen_classes(cfg, run)
    out = Path(cfg.out)
    if cfg.format == "folder":
        if not is_image_shape(run.shape):
            raise UserError("format=folder writes images; this checkpoint models points.")
        labels = folder_labels(cfg, run, chosen) if run.classes is not None else None
        write_folder(run.G, cfg.n, run.z_dim, out, cfg.seed, cfg.temperature, run.device,
                     cfg.batch, labels, run.classes)
        print(f"wrote {cfg.n} samples to {out}/ (iter {run.iter} of {cfg.ckpt})"
              + ("; their labels in dataset.json" if labels is not None else ""))
        return {"n": cfg.n, "out": str(out)}
    z, labels, nrow = grid_codes(cfg, run, chosen)
    samples = generate(run.G, z, cfg.batch, run.device, labels=labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    run.render(samples, nrow or int(math.ceil(math.sqrt(samples.shape[0])))).save(out)
    print(f"wrote a grid of {samples.shape[0]} samples to {out} (iter {run.iter} of {cfg.ckpt})"
          + (f"; rows: classes {', '.join(run.classes[k] for k in labels[::nrow].tolist())}"
             if labels is not None and nrow else ""))
    return {"n": samples.shape[0], "out": str(out)}
