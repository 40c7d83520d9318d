"""Every fid.* key and every `ganqp fid` argument, checked before any work starts.

`validate_fid_command(cfg)` runs first in `ganqp fid`; `validate_fid_train(cfg)` is for the
training command's central validation (train.fid_every, train.fid_n, fid.*). Bad values end
in the usual one-paragraph UserError naming the key and what would be valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from ganqp_cli import checks as C
from ganqp_cli.errors import UserError
from ganqp_cli.metrics.extractors import EXTRACTOR_NAMES
from ganqp_cli.metrics.inception import INCEPTION_DIMS
from ganqp_cli.metrics.registry import DIRECTIONS, METRICS, selected
from ganqp_cli.metrics.resize import MODES


def metric_names(value: Any) -> list[str]:
    """fid.metrics: a list of known names (or one name), none twice."""
    names = [value] if isinstance(value, str) else value
    valid = ("a list of " + ", ".join(METRICS) + " (each at most once), e.g. "
             "fid.metrics=[fid,kid,pr,dc,is]")
    C.require(isinstance(names, list | tuple | ListConfig) and len(names) > 0, "fid.metrics",
              value, valid)
    names = [str(n) for n in names]
    for n in names:
        C.require(n in METRICS, "fid.metrics", value, f"{valid}; {n!r} is not a metric")
    C.require(len(set(names)) == len(names), "fid.metrics", value, valid)
    return names


def validate_fid(fc: Any) -> None:
    """The fid.* settings shared by `ganqp fid` and FID during training."""
    kind = C.choice("fid.extractor", fc.extractor, EXTRACTOR_NAMES,
                    " (inception: pytorch-fid's InceptionV3; digits: offline, for the digits)")
    dims = (None, *INCEPTION_DIMS) if kind == "inception" else (None, 64)
    C.choice("fid.dims", fc.dims, dims, f" for fid.extractor={kind}")
    if fc.weights and not Path(str(fc.weights)).expanduser().is_file():
        raise UserError(f"fid.weights={fc.weights}: no such file. Pass the weights file of "
                        f"the {kind} extractor, or leave fid.weights unset (inception: "
                        "pytorch-fid's torch hub cache; digits: trained on first use).")
    C.whole("fid.ref_n", fc.ref_n, 2, allow_none=True, note=" (null: every reference image)")
    C.whole("fid.batch", fc.batch, 1)
    C.whole("fid.workers", fc.workers, 0)
    C.whole("fid.kid_subsets", fc.kid_subsets, 1)
    C.whole("fid.kid_subset_size", fc.kid_subset_size, 2)
    C.choice("fid.method", fc.method, ("eig", "scipy"))
    C.whole("fid.seed", fc.seed, 0)
    C.boolean("fid.cache", fc.cache)
    metric_names(fc.metrics)
    C.choice("fid.resize", fc.resize, MODES,
             " (legacy: pytorch-fid's bilinear; clean: clean-fid's antialiased bicubic)")
    C.boolean("fid.tf32", fc.tf32)
    C.whole("fid.repeats", fc.repeats, 1)
    C.whole("fid.pr_k", fc.pr_k, 1)
    C.whole("fid.dc_k", fc.dc_k, 1)
    C.whole("fid.is_splits", fc.is_splits, 1)
    C.choice("fid.best", fc.best, DIRECTIONS, " (a number of the selected fid.metrics)")


def _check_sample_count(key: str, n: int, fc: Any) -> None:
    """Enough generated samples for the selected k-NN metrics and IS splits."""
    names = metric_names(fc.metrics)
    if "pr" in names or "dc" in names:
        k = max(int(fc.pr_k) if "pr" in names else 0, int(fc.dc_k) if "dc" in names else 0)
        C.require(n > k, key, n, f"more than {k} samples for the k-nearest-neighbour "
                  "metrics (fid.pr_k, fid.dc_k)")
    if "is" in names:
        C.require(n >= int(fc.is_splits), key, n, f"at least fid.is_splits={fc.is_splits} "
                  "samples for the Inception Score")


def _check_paths(cfg: Any) -> None:
    if cfg.ckpt is not None and cfg.samples is not None:
        raise UserError("pass ckpt=PATH (generate samples) or samples=DIR (a folder), not both.")
    if cfg.ckpt is not None:
        C.checkpoint_file("ckpt", cfg.ckpt)
    if cfg.samples is not None:
        C.existing_dir("samples", cfg.samples, "a folder of images")
    if cfg.ref is not None:
        if cfg.get("data") is not None:
            raise UserError("pass one reference: ref=DIR or ref=FILE.npz, or data=NAME, not "
                            "both.")
        ref = Path(str(cfg.ref)).expanduser()
        if ref.suffix == ".npz" and not ref.is_file():
            raise UserError(f"ref={cfg.ref}: no such statistics file.")
        if ref.suffix != ".npz" and not ref.is_dir():
            raise UserError(f"ref={cfg.ref} is neither a folder of images nor a .npz "
                            "statistics file (pytorch-fid's format, e.g. written by "
                            "save_stats=FILE.npz).")
    if cfg.save_stats is not None:
        C.output_file("save_stats", cfg.save_stats, (".npz",))
    if cfg.out is not None:
        C.output_file("out", cfg.out, (".json",))


def validate_fid_command(cfg: Any) -> None:
    """Every argument of `ganqp fid`, before any work."""
    validate_fid(cfg.fid)
    C.device("device", cfg.device)
    from ganqp_cli.data import validate_data
    validate_data(cfg.get("data"))
    _check_paths(cfg)
    C.whole("n", cfg.n, 2, note=" (the number of samples generated from ckpt)")
    C.boolean("ema", cfg.ema)
    C.whole("res", cfg.res, 1, allow_none=True)
    if cfg.ckpt is None and cfg.samples is None and cfg.save_stats is None:
        raise UserError("nothing to measure: pass ckpt=PATH or samples=DIR (and a reference), "
                        "or save_stats=FILE.npz to write the reference's statistics only.")
    if cfg.ckpt is None and int(cfg.fid.repeats) > 1:
        raise UserError(f"fid.repeats={cfg.fid.repeats} draws samples anew each time: it needs "
                        "ckpt=PATH (a folder of samples is one fixed draw; use fid.repeats=1).")
    if cfg.ckpt is not None:
        _check_sample_count("n", int(cfg.n), cfg.fid)


def validate_fid_train(cfg: Any) -> None:
    """train.fid_every, train.fid_n and fid.* of a training run."""
    t = cfg.train
    every = C.whole("train.fid_every", t.get("fid_every", 0), 0,
                    note=" (0 turns FID during training off)")
    validate_fid(cfg.fid)
    if not every:
        return
    n = C.whole("train.fid_n", t.fid_n, 2,
                note=" (generated samples per evaluation; 10000 is the standard)")
    _check_sample_count("train.fid_n", n, cfg.fid)
    by_class = [m for m in metric_names(cfg.fid.metrics) if m in ("ifid", "acc")]
    if by_class and not cfg.get("cond", False):
        raise UserError(f"fid.metrics={metric_names(cfg.fid.metrics)}: {', '.join(by_class)} "
                        "measure a class-conditional model; train with cond=true, or leave "
                        f"{', '.join(by_class)} out of fid.metrics.")
    if "modes" in metric_names(cfg.fid.metrics):
        from ganqp_cli.metrics.modes import check_fits
        check_fits(str(cfg.data.get("name")), "fid.metrics")
    logged = [k for m in selected(cfg.fid.metrics) for k, d in m.keys.items() if d]
    C.choice("fid.best", cfg.fid.best, logged,
             " (the number best.pt is kept by: one that fid.metrics="
             f"[{','.join(metric_names(cfg.fid.metrics))}] logs)")
