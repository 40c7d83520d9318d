"""`ganqp reconstruct`: real images through a trained encoder model (BiGAN-QP, O-GAN).

Modes: `recon` (real and reconstructed images in alternating columns), `interp` (for pairs
of real images: real, reconstruction, k interpolants between their codes, reconstruction,
real), `neighbors` (queries on top, their k nearest training images in code space below) and
`encode` (the codes of a whole data set, as .npy).

Which images: `images=DIR` (a folder), else the data set given with `data=NAME ...`, else the
checkpoint's own data config. A data set trained with `data.holdout=F` keeps a fixed-seed
fraction F of its items out of training (ganqp_cli.data.split_indices); `split=auto` then
shows those held-out items, and `neighbors` searches the training part.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ganqp_cli.config import make
from ganqp_cli.data import ImageFolder, image_grid, is_image_shape, list_images
from ganqp_cli.errors import UserError
from ganqp_cli.generate import generate
from ganqp_cli.sampling import Trained, load_trained, slerp
from ganqp_cli.validation import validate_reconstruct

DEFAULT_OUT = {"recon": "recon.png", "interp": "interp.png", "neighbors": "neighbors.png",
               "encode": "latents.npy"}


# -- data ---------------------------------------------------------------------------------
def data_node(cfg: DictConfig, run: Trained) -> DictConfig:
    """The data config to read: `data=...` given to this command, else the checkpoint's."""
    node = cfg.get("data") or run.config.data
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))


def with_split(node: DictConfig, split: str) -> DictConfig:
    """`node` restricted to one part of its fixed-seed split (see data.split_indices)."""
    holdout = float(node.get("holdout") or 0.0)
    node = node.copy()
    if split == "auto":
        split = "heldout" if holdout > 0 else "all"
    if split == "all":
        if "holdout" in node:
            node.holdout = 0.0
        return node
    if split == "heldout" and holdout <= 0:
        raise UserError(f"split=heldout: data={node.get('name')} has no held-out part "
                        "(data.holdout is 0). Train with data.holdout=0.1 (for example) to keep "
                        "images out of training, or use split=all.")
    if holdout > 0:
        node.split = split
    return node


def open_data(cfg: DictConfig, run: Trained, split: str) -> Any:
    """The data set's part `split` at the checkpoint's resolution."""
    data = make(with_split(data_node(cfg, run), split), "data", res=run.shape[-1])
    if tuple(data.shape) != tuple(run.shape):
        raise UserError(f"data={data.name} gives items of shape {tuple(data.shape)}, but the "
                        f"checkpoint's model takes {tuple(run.shape)}"
                        + (f"; set data.channels={run.shape[0]}"
                           if is_image_shape(run.shape) else "")
                        + ".")
    return data


def open_queries(cfg: DictConfig, run: Trained) -> Any:
    """The images to show: the folder `images`, else the data set's part `split`."""
    if not cfg.images:
        return open_data(cfg, run, cfg.split)
    list_images(cfg.images, key="images")  # names `images` when the folder is wrong
    return ImageFolder(str(cfg.images), run.shape[-1], name="images", channels=run.shape[0])


def load_items(data: Any, idx: list[int]) -> torch.Tensor:
    """Items `idx` of a data set as model inputs (unflipped)."""
    return data.to_model(torch.stack([data[(i, False)] for i in idx]))


def pick(n_items: int, n: int, seed: int) -> list[int]:
    """n distinct indices, a seeded choice (all of them, in order, when n >= n_items)."""
    if n >= n_items:
        return list(range(n_items))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n_items, generator=g)[:n].tolist())


# -- encode and decode --------------------------------------------------------------------
@torch.no_grad()
def encode(run: Trained, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([run.objective.encode(run.models, x[i:i + batch].to(run.device)).cpu()
                      for i in range(0, x.shape[0], batch)])


def encode_items(run: Trained, data: Any, idx: list[int], batch: int
                 ) -> tuple[torch.Tensor, list[int]]:
    """Codes of items `idx`, read batch by batch (a large data set never sits in memory),
    and a hash of each item's pixels (to recognise the same image in two data sets)."""
    codes, hashes = [], []
    for i in range(0, len(idx), batch):
        x = load_items(data, idx[i:i + batch])
        codes.append(encode(run, x, batch))
        hashes += [hash(row.numpy().tobytes()) for row in x]
    return torch.cat(codes), hashes


def decode(run: Trained, codes: torch.Tensor, temperature: float, batch: int = 256
           ) -> torch.Tensor:
    """G(temperature * code): the reconstruction from a code, as `ganqp sample` would draw
    it from that z."""
    return generate(run.G, temperature * codes, batch, run.device)


def reconstruction_errors(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[float, float]:
    """(mean |x_i - x_hat_i|, mean |x_i - x_hat_j| over all j != i): the error of each image's
    own reconstruction and of a baseline that pairs it with another image's reconstruction."""
    a, b = x.flatten(1).double(), x_hat.flatten(1).double()
    d = torch.cdist(a, b, p=1) / a.shape[1]
    n = d.shape[0]
    own = d.diagonal().mean().item()
    other = ((d.sum() - d.diagonal().sum()) / max(n * (n - 1), 1)).item()
    return own, other


def nearest(queries: torch.Tensor, pool: torch.Tensor, k: int, metric: str,
            exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (n, k) of the k nearest pool rows of each query; `exclude` (n, P) bool masks
    pairs that must not match (a query that is itself in the pool)."""
    if metric == "cosine":
        q = torch.nn.functional.normalize(queries.double(), dim=1)
        p = torch.nn.functional.normalize(pool.double(), dim=1)
        dist = 1.0 - q @ p.T
    else:
        dist = torch.cdist(queries.double(), pool.double())
    if exclude is not None:
        dist = dist.masked_fill(exclude, math.inf)
    return dist.topk(min(k, pool.shape[0]), dim=1, largest=False).indices


# -- the command --------------------------------------------------------------------------
def reconstruct_command(cfg: DictConfig) -> dict[str, Any]:
    validate_reconstruct(cfg)
    run = load_trained(cfg.ckpt, ema=cfg.ema, device=str(cfg.device))
    if not run.objective.has_encoder:
        raise UserError(f"ckpt={cfg.ckpt} was trained with objective={run.objective.name}, "
                        "which has no encoder; reconstruction needs a checkpoint of an encoder "
                        "model (objective=bigan-qp or objective=o-gan).")
    if run.classes is not None:
        raise UserError(f"ckpt={cfg.ckpt} is class-conditional (trained with cond=true): its "
                        "encoder and generator need each image's class, which ganqp "
                        "reconstruct does not give them; reconstruct from a model trained "
                        "with cond=false.")
    mode = cfg.mode
    if mode != "encode" and not is_image_shape(run.shape):
        raise UserError(f"mode={mode} draws image grids; this checkpoint models points of "
                        f"shape {tuple(run.shape)}. Use mode=encode.")
    temperature = float(cfg.temperature if cfg.temperature is not None
                        else getattr(run.objective, "default_temperature", 1.0))
    out = Path(cfg.out or DEFAULT_OUT[mode])
    out.parent.mkdir(parents=True, exist_ok=True)
    data = open_queries(cfg, run)
    b = cfg.batch

    if mode == "encode":
        codes, _ = encode_items(run, data, list(range(len(data))), b)
        np.save(out, codes.numpy().astype(np.float32))
        print(f"wrote the codes of {codes.shape[0]} items, shape {tuple(codes.shape)}, to "
              f"{out} (iter {run.iter} of {cfg.ckpt})")
        return {"mode": mode, "n": codes.shape[0], "out": str(out)}

    n = 2 * max(1, cfg.n // 2) if mode == "interp" else cfg.n
    idx = pick(len(data), n, cfg.seed)
    x = load_items(data, idx)
    codes = encode(run, x, b)
    result: dict[str, Any] = {"mode": mode, "n": len(idx), "out": str(out),
                              "temperature": temperature}
    draw = {"recon": draw_recon, "interp": draw_interp, "neighbors": draw_neighbors}[mode]
    result.update(draw(cfg, run, x, codes, temperature, out))
    return result


def draw_recon(cfg: DictConfig, run: Trained, x: torch.Tensor, codes: torch.Tensor,
               temperature: float, out: Path) -> dict[str, Any]:
    """Real and reconstructed images in alternating columns, and the two errors."""
    x_hat = decode(run, codes, temperature, cfg.batch)
    own, other = reconstruction_errors(x, x_hat)
    per_row = cfg.nrow or int(math.ceil(math.sqrt(x.shape[0])))
    grid = torch.stack([x, x_hat], 1).flatten(0, 1)  # real, reconstruction, real, ...
    image_grid(grid, 2 * per_row).save(out)
    print(f"wrote {x.shape[0]} real/reconstructed pairs to {out}: mean |x - x_hat| "
          f"{own:.4f}, vs {other:.4f} for another image's reconstruction (iter {run.iter})")
    return {"error": own, "baseline": other}


def draw_interp(cfg: DictConfig, run: Trained, x: torch.Tensor, codes: torch.Tensor,
                temperature: float, out: Path) -> dict[str, Any]:
    """Rows: real, reconstruction, k interpolants between two codes, reconstruction, real."""
    ca, cb = codes[0::2], codes[1::2]
    rows, steps = ca.shape[0], cfg.k + 2
    t = torch.linspace(0, 1, steps).view(1, steps, 1).expand(rows, -1, -1)
    path = slerp(ca[:, None].expand(-1, steps, -1), cb[:, None].expand(-1, steps, -1), t)
    dec = decode(run, path.reshape(rows * steps, -1), temperature, cfg.batch)
    dec = dec.view(rows, steps, *x.shape[1:])
    grid = torch.cat([x[0::2, None], dec, x[1::2, None]], 1)
    image_grid(grid.flatten(0, 1), steps + 2).save(out)
    print(f"wrote {rows} interpolation rows ({cfg.k} steps) to {out} (iter {run.iter})")
    return {}


def draw_neighbors(cfg: DictConfig, run: Trained, x: torch.Tensor, codes: torch.Tensor,
                   temperature: float, out: Path) -> dict[str, Any]:
    """The queries on top, their k nearest training images in code space below."""
    pool_data = open_data(cfg, run, "train")
    pool_idx = pick(len(pool_data), cfg.pool or len(pool_data), cfg.seed + 1)
    pool_codes, pool_hashes = encode_items(run, pool_data, pool_idx, cfg.batch)
    # A query that is itself a training image would be its own nearest neighbour.
    q_hashes = torch.tensor([hash(row.numpy().tobytes()) for row in x])
    same = q_hashes[:, None] == torch.tensor(pool_hashes)[None, :]
    nn_idx = nearest(codes, pool_codes, cfg.k, cfg.metric, same)
    found = load_items(pool_data, [pool_idx[j] for j in nn_idx.T.flatten().tolist()])
    image_grid(torch.cat([x, found]), x.shape[0]).save(out)  # queries, then rank by rank
    print(f"wrote {x.shape[0]} queries and their {nn_idx.shape[1]} nearest training images "
          f"({cfg.metric}, {len(pool_idx)} searched) to {out} (iter {run.iter})")
    return {"neighbors": [[pool_idx[j] for j in row] for row in nn_idx.tolist()],
            "excluded": int(same.sum())}
