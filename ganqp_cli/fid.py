"""FID and KID: statistics, the distances, cached reference statistics, `ganqp fid`.

FID is pytorch-fid's: the same network, input path and estimator (mean, np.cov, Fréchet
distance). KID is the unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3, mean and
std over random subsets (torch-fidelity's estimator and defaults). Images and features come
from ganqp_cli.features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganqp_cli import distributed as D
from ganqp_cli.errors import UserError
from ganqp_cli.extractors import cache_dir
from ganqp_cli.features import Source, dataset_source, extract, folder_source, generator_source

# ---- statistics, FID, KID --------------------------------------------------------------------

@dataclass
class Stats:
    """pytorch-fid's statistics (float64 mean and covariance) and, for KID, the features."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, features: np.ndarray, meta: dict[str, Any] | None = None) -> Stats:
        if features.shape[0] < 2:
            raise UserError(f"FID needs at least 2 images on each side; got {features.shape[0]}.")
        act = features.astype(np.float64)
        return cls(act.mean(axis=0), np.cov(act, rowvar=False), features.shape[0],
                   features.astype(np.float32), dict(meta or {}))

    def save(self, path: Path) -> None:
        """pytorch-fid's .npz (mu, sigma), plus n, the features and what made them."""
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"features": self.features} if self.features is not None else {}
        tmp = path.with_name(f".{path.name}.{D.current().rank}.tmp.npz")
        np.savez(tmp, mu=self.mu, sigma=self.sigma, n=self.n, meta=json.dumps(self.meta), **extra)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, key: str = "ref") -> Stats:
        try:
            with np.load(path) as f:
                mu, sigma = f["mu"][:], f["sigma"][:]
                feats = f["features"][:] if "features" in f else None
                n = int(f["n"]) if "n" in f else (feats.shape[0] if feats is not None else 0)
                meta = json.loads(str(f["meta"])) if "meta" in f else {}
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"{key}={path} is not a statistics file: pytorch-fid's .npz with "
                            f"'mu' and 'sigma' is expected ({err}).") from None
        return cls(mu, sigma, n, feats, meta)


def _trace_sqrt_product(a: Stats, b: Stats, device: torch.device | None) -> float:
    """tr sqrt(S_a S_b) from symmetric eigenvalues (S_a S_b is similar to a PSD matrix).

    With features and fewer samples than dimensions, S = X'X/(n-1) makes the nonzero
    eigenvalues of S_a S_b those of X S_b X'/(n-1): an n x n problem instead of d x d."""
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(device or "cpu", torch.float64)

    for x, other in ((a, b), (b, a)):
        if x.features is not None and x.n < x.mu.shape[0]:
            c = t(x.features.astype(np.float64) - x.mu)
            m = c @ t(other.sigma) @ c.T / (x.n - 1)
            return float(torch.linalg.eigvalsh(m).clamp_(min=0).sqrt_().sum())
    w, v = torch.linalg.eigh(t(a.sigma))
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    m = root @ t(b.sigma) @ root
    return float(torch.linalg.eigvalsh(m).clamp_(min=0).sqrt_().sum())


def frechet_distance(a: Stats, b: Stats, method: str = "eig",
                     device: torch.device | None = None) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 sqrt(S_a S_b)).

    `scipy`: pytorch-fid's own function (scipy.linalg.sqrtm, slow at 2048 dims); `eig`: the
    same quantity from symmetric eigenvalues, several times faster."""
    if a.mu.shape != b.mu.shape:
        raise UserError(f"the two sides have features of {a.mu.shape[0]} and {b.mu.shape[0]} "
                        "dimensions: compute both with the same fid.extractor and fid.dims.")
    if method == "scipy":
        from pytorch_fid.fid_score import calculate_frechet_distance
        return float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    if method != "eig":
        raise UserError(f"fid.method={method!r} is not valid: eig or scipy.")
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma)
                 - 2 * _trace_sqrt_product(a, b, device))


def kid_subsets(n_a: int, n_b: int, subsets: int, size: int, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs of the KID subsets: `size` rows of each side without replacement."""
    rng = np.random.RandomState(seed)
    for _ in range(subsets):
        yield rng.choice(n_a, size, replace=False), rng.choice(n_b, size, replace=False)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 of two equal-size samples, kernel (x.y / d + 1)^3."""
    m, d = x.shape
    k_xx, k_yy, k_xy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    off = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum())
    return float(off / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kid(fa: np.ndarray, fb: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, device: torch.device | None = None) -> tuple[float, float, int]:
    """KID mean and std over subsets, and the subset size used (clipped to both counts)."""
    size = min(subset_size, fa.shape[0], fb.shape[0])
    if size < 2:
        raise UserError("KID needs at least 2 images on each side.")
    ta = torch.from_numpy(fa).to(device or "cpu", torch.float64)
    tb = torch.from_numpy(fb).to(device or "cpu", torch.float64)
    vals = np.array([mmd2_unbiased(ta[torch.from_numpy(i).to(ta.device)],
                                   tb[torch.from_numpy(j).to(tb.device)])
                     for i, j in kid_subsets(fa.shape[0], fb.shape[0], subsets, size, seed)])
    return float(vals.mean()), float(vals.std()), size


def scores(gen: Stats, ref: Stats, fcfg: Any, device: torch.device | None = None
           ) -> dict[str, Any]:
    """FID and (when both sides kept features) KID, with the counts and settings used."""
    out: dict[str, Any] = {"fid": frechet_distance(gen, ref, str(fcfg.method), device),
                           "kid": None, "kid_std": None, "kid_subset_size": None}
    if gen.features is not None and ref.features is not None:
        k, s, size = kid(gen.features, ref.features, int(fcfg.kid_subsets),
                         int(fcfg.kid_subset_size), device=device)
        out.update(kid=k, kid_std=s, kid_subset_size=size)
    return out


# ---- cached reference statistics --------------------------------------------------------------

def stats_key(info: dict[str, Any], n: int, extractor: nn.Module) -> str:
    """Cache file name: data set, resolution, count, extractor, dims and weights (+ root)."""
    root = hashlib.sha256(str(info.get("root", "")).encode()).hexdigest()[:8]
    return (f"{info['data']}-{info['res']}px-n{n}-{extractor.name}{extractor.dims}-"
            f"{extractor.weights_id}-{root}.npz")


def reference_stats(src: Source, extractor: nn.Module, fcfg: Any, cache: bool = True
                    ) -> tuple[Stats, Path | None]:
    """Statistics of a data set, read from the cache when they were computed before."""
    path = cache_dir() / "fid_stats" / stats_key(src.info, src.n, extractor)
    found = D.broadcast_object(cache and path.is_file())
    if found:
        return Stats.load(path, key="fid cache"), path
    if D.current().is_main:
        print(f"fid: computing reference statistics of {src.describe} ({extractor.name}, "
              f"{extractor.dims}-d)", flush=True)
    stats = Stats.of(extract(src, extractor, int(fcfg.batch), int(fcfg.workers)),
                     meta_of(extractor, src))
    if cache and D.current().is_main:
        stats.save(path)
    D.barrier()
    return stats, (path if cache else None)


def meta_of(extractor: nn.Module, src: Source) -> dict[str, Any]:
    return {"extractor": extractor.name, "dims": extractor.dims,
            "weights": extractor.weights_id, "source": src.describe}


def check_ref_meta(stats: Stats, extractor: nn.Module, key: str) -> None:
    meta = stats.meta
    if stats.mu.shape[0] != extractor.dims or meta.get("extractor", extractor.name) != \
            extractor.name:
        raise UserError(f"{key}: the statistics were computed with "
                        f"{meta.get('extractor', 'an extractor')} features of "
                        f"{stats.mu.shape[0]} dimensions; this run uses {extractor.name} "
                        f"with {extractor.dims} (set fid.extractor / fid.dims to match).")
    if meta.get("weights", extractor.weights_id) != extractor.weights_id:
        raise UserError(f"{key}: the statistics were computed with other {extractor.name} "
                        f"weights ({meta['weights']}, this run: {extractor.weights_id}); "
                        "recompute them (save_stats=FILE.npz) or pass the same fid.weights.")


# ---- `ganqp fid` -----------------------------------------------------------------------------

def _reference(cfg: Any, run: Any, gen: Source | None, extractor: nn.Module
               ) -> tuple[Stats, str]:
    from omegaconf import OmegaConf

    from ganqp_cli.config import make
    fc = cfg.fid
    if cfg.ref is not None and cfg.get("data") is not None:
        raise UserError("pass one reference: ref=DIR or ref=FILE.npz, or data=NAME, not both.")
    if cfg.ref is not None:
        path = Path(str(cfg.ref)).expanduser()
        if path.suffix == ".npz":
            if not path.is_file():
                raise UserError(f"ref={cfg.ref}: no such statistics file.")
            stats = Stats.load(path)
            check_ref_meta(stats, extractor, f"ref={cfg.ref}")
            return stats, f"statistics {path} ({stats.n or '?'} images)"
        if not path.is_dir():
            raise UserError(f"ref={cfg.ref} is neither a folder of images nor a .npz statistics "
                            "file (pytorch-fid's format, e.g. written by save_stats=FILE.npz).")
        src = folder_source(str(path), "ref")
        return Stats.of(extract(src, extractor, int(fc.batch), int(fc.workers)),
                        meta_of(extractor, src)), src.describe
    if cfg.get("data") is not None:
        node, res = cfg.data, cfg.res
        if res is None and run is not None:
            res = int(run.config.res)
        if res is None and gen is not None and gen.item is not None:
            res = int(gen.item(0).shape[-1])
        if res is None:
            raise UserError("res is required with data=NAME and no samples: the resolution "
                            "of the reference images, e.g. res=128.")
    elif run is not None:
        node, res = OmegaConf.create(run.config.data), int(run.config.res)
    else:
        raise UserError("no reference: pass ref=DIR (images), ref=FILE.npz (statistics) or "
                        "data=NAME (a ganqp data set, with data.root=PATH and res=N); with "
                        "ckpt=PATH the run's own data set is the default.")
    src = dataset_source(make(node, "data", res=int(res)), fc.ref_n)
    stats, path = reference_stats(src, extractor, fc, cache=bool(fc.cache))
    return stats, src.describe + (f" (statistics cached at {path})" if path else "")


def fid_command(cfg: Any) -> dict[str, Any]:
    dist = D.init_process_group()
    result = _measure(cfg, dist)
    if dist.enabled:  # leave together: a rank exiting with the group alive may abort
        D.barrier()
        D.shutdown()
    return result


def _measure(cfg: Any, dist: D.Dist) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from ganqp_cli.extractors import make_extractor
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={cfg.device}: CUDA is not available on this machine; use "
                        "device=cpu or device=auto.")
    device = D.device_for(str(cfg.device), dist)
    fc = cfg.fid
    if cfg.ckpt is not None and cfg.samples is not None:
        raise UserError("pass ckpt=PATH (generate samples) or samples=DIR (a folder), not both.")
    run, gen = None, None
    if cfg.ckpt is not None:
        from ganqp_cli.sampling import latents, load_trained
        if not isinstance(cfg.n, int) or cfg.n < 2:
            raise UserError(f"n={cfg.n!r} is not valid: the number of samples, >= 2.")
        run = load_trained(str(cfg.ckpt), ema=bool(cfg.ema), device=str(device))
        if len(run.shape) != 3:
            raise UserError(f"ckpt={cfg.ckpt} models points, not images: FID needs images.")
        gen = generator_source(run.G, latents(cfg.n, run.z_dim, int(fc.seed)), run.device,
                               f"{cfg.ckpt} (iter {run.iter})")
    elif cfg.samples is not None:
        gen = folder_source(str(cfg.samples), "samples")
    if cfg.save_stats is not None and not str(cfg.save_stats).endswith(".npz"):
        raise UserError(f"save_stats={cfg.save_stats}: name the file FILE.npz (pytorch-fid "
                        "reads statistics only from .npz files).")
    if gen is None and cfg.save_stats is None:
        raise UserError("nothing to measure: pass ckpt=PATH or samples=DIR (and a reference), "
                        "or save_stats=FILE.npz to write the reference's statistics only.")
    extractor = make_extractor(str(fc.extractor), fc.dims, fc.weights, device)
    ref, ref_desc = _reference(cfg, run, gen, extractor)
    if cfg.save_stats is not None and dist.is_main:
        ref.save(Path(str(cfg.save_stats)).expanduser())
        print(f"saved reference statistics ({ref_desc}) to {cfg.save_stats}")
    if gen is None:
        return {"n_ref": ref.n}
    stats = Stats.of(extract(gen, extractor, int(fc.batch), int(fc.workers)))
    if not dist.is_main:
        return {}
    result = {**scores(stats, ref, fc, device), "n": stats.n, "n_ref": ref.n,
              "extractor": extractor.name, "dims": extractor.dims,
              "weights": extractor.weights_id, "method": str(fc.method),
              "samples": gen.describe, "ref": ref_desc}
    if hasattr(extractor, "accuracy"):
        result["extractor_heldout_accuracy"] = extractor.accuracy
    if run is not None:
        result["ckpt_iter"] = run.iter
    kid_text = ("n/a (the reference statistics hold no features)" if result["kid"] is None else
                f"{result['kid']:.6g} ± {result['kid_std']:.2g} "
                f"({fc.kid_subsets} subsets of {result['kid_subset_size']})")
    out = Path(str(cfg.out)) if cfg.out else Path(HydraConfig.get().runtime.output_dir) / "fid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"FID {result['fid']:.6g}  KID {kid_text}\n"
          f"  samples:   {gen.describe}\n  reference: {ref_desc}\n"
          f"  extractor: {extractor.name}, {extractor.dims}-d features (weights "
          f"{extractor.weights_id})\nwrote {out}")
    return result
