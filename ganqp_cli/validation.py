"""One validation entry point per command, run before any work: every key the command reads
is checked here (with the shared checks of ganqp_cli.checks, and the checks each part
contributes for its own keys), so that bad input ends with one paragraph naming the key.

Deeper code may assume what was checked here.
"""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig, ListConfig

from ganqp_cli import checks as c
from ganqp_cli.augment import validate_aug
from ganqp_cli.config import AMP_MODES, amp_mode, check_missing
from ganqp_cli.data import validate_data
from ganqp_cli.networks import validate_arch
from ganqp_cli.objectives import validate_objective
from ganqp_cli.regularizers import validate_reg
from ganqp_cli.training import compiling

OPTIMISER_EXAMPLE = "an optimiser node such as {_target_: torch.optim.Adam, lr: 2e-4}"
# The most images one grid holds: a grid is one PNG, drawn in memory (more: format=folder).
MAX_GRID = 10000


def validate_train(cfg: DictConfig, world: int = 1) -> None:
    """`ganqp train`: the whole config, before the run directory is locked or written."""
    check_missing(cfg, {"data.root": "data sets read from disk need data.root=PATH "
                                     "(a folder of images)"})
    res = cfg.res
    c.require(c.is_int(res) and (res == 0 or (16 <= res <= 1024 and res & (res - 1) == 0)),
              "res", res, "a power of two from 16 to 1024 (16, 32, 64, 128, 256, 512, 1024), "
              "or 0 for point data such as data=ring8")
    c.whole("seed", cfg.seed, 0)
    c.device("device", cfg.device)
    c.boolean("cond", cfg.get("cond", False))
    if cfg.resume is not None:
        c.checkpoint_file("resume", cfg.resume)
    _train_keys(cfg.train, world)
    _objective_keys(cfg.objective)
    validate_objective(cfg.objective)
    _arch_keys(cfg.arch)
    validate_arch(cfg.arch, cfg.res)
    validate_aug(cfg.aug)
    validate_reg(cfg.reg)
    validate_data(cfg.data)
    if cfg.train.fid_every:  # the fid.* keys matter only when training measures FID
        from ganqp_cli.metrics.validate import validate_fid_train
        validate_fid_train(cfg)
    _contributed(cfg)


def _train_keys(t: DictConfig, world: int) -> None:
    for key in ("iters", "batch_size", "log_every", "sample_n", "nan_patience"):
        c.whole(f"train.{key}", t[key], 1)
    for key in ("sample_every", "ckpt_every", "keep_ckpts", "workers", "threads", "fid_every"):
        c.whole(f"train.{key}", t[key], 0, note=" (0 turns it off)")
    c.require(t.batch_size % world == 0, "train.batch_size", t.batch_size,
              f"the global batch must divide evenly over the {world} processes")
    c.require(t.batch_size // world >= 2, "train.batch_size", t.batch_size,
              f"at least 2 images per process ({world} processes): BatchNorm cannot normalise "
              "a batch of one")
    c.number("train.ema", t.ema, 0, 1, high_open=True,
             note=": a decay in [0, 1) (0 turns the EMA generator off)")
    c.choice("train.amp", amp_mode(t.amp), AMP_MODES)
    for key in ("compile", "channels_last"):
        c.choice(f"train.{key}", compiling.setting(t[key]), compiling.MODES)
    for key in ("sample_ema", "tf32", "deterministic"):
        c.boolean(f"train.{key}", t[key])
    c.whole("train.dist_timeout_s", t.dist_timeout_s, 1,
            note=" (seconds a collective waits for every rank)")


def _objective_keys(obj: DictConfig) -> None:
    c.whole("objective.d_steps", obj.d_steps, 1)
    for key in ("opt_d", "opt_g"):
        optimiser(f"objective.{key}", obj[key])
    c.boolean("objective.sn", obj.sn)
    c.choice("objective.d_norm", obj.d_norm, ("bn", "none"))


def optimiser(key: str, node: Any) -> None:
    """An optimiser node: a `_target_` and numeric hyperparameters (lr > 0, betas in [0, 1))."""
    c.require(isinstance(node, DictConfig) and "_target_" in node, key, node, OPTIMISER_EXAMPLE)
    target = str(node._target_)
    module, _, name = target.rpartition(".")
    try:
        ok = callable(getattr(importlib.import_module(module), name, None)) if module else False
    except ImportError:
        ok = False
    c.require(ok, f"{key}._target_", target, "an importable optimiser class such as "
              "torch.optim.Adam, torch.optim.RMSprop or torch.optim.SGD")
    for k, v in node.items():
        if k == "_target_":
            continue
        if k == "betas":
            c.require(isinstance(v, ListConfig | list | tuple) and len(v) == 2
                      and all(c.is_number(b) and 0 <= b < 1 for b in v), f"{key}.betas", v,
                      "two numbers in [0, 1), e.g. [0.5,0.999]")
        elif k == "lr":
            c.number(f"{key}.lr", v, 0, low_open=True)
        elif not (c.is_number(v) or isinstance(v, bool)):
            raise c.fail(f"{key}.{k}", v, "a number (or true/false)")


def _arch_keys(arch: DictConfig) -> None:
    if "width" in arch:
        c.number("arch.width", arch.width, 0, low_open=True, note=" (a channel multiplier)")
    if "z_dim" in arch:
        c.whole("arch.z_dim", arch.z_dim, 1)
    if "sn" in arch:
        c.boolean("arch.sn", arch.sn)
    if "sync_bn" in arch:
        c.boolean("arch.sync_bn", arch.sync_bn)


# Checks that parts of the package contribute for their own keys, as "module:function"
# taking the whole config; a part that is not installed simply has none.
CONTRIBUTED: tuple[str, ...] = ("ganqp_cli.trackers:validate_loggers",
                                "ganqp_cli.schedules:validate_schedule")


def _contributed(cfg: DictConfig) -> None:
    for spec in CONTRIBUTED:
        module, _, func = spec.partition(":")
        getattr(importlib.import_module(module), func)(cfg)


# ---- ganqp sample / reconstruct --------------------------------------------------------------

def validate_sample(cfg: DictConfig) -> None:
    check_missing(cfg, {"ckpt": "pass the checkpoint to sample from, e.g. "
                                "ckpt=outputs/<run>/checkpoints/last.pt"})
    c.checkpoint_file("ckpt", cfg.ckpt)
    c.choice("format", cfg.format, ("grid", "folder"),
             note=" (grid: one PNG; folder: n numbered PNGs in the folder `out`)")
    if cfg.format == "grid":
        c.whole("n", cfg.n, 1, MAX_GRID, note=" for one grid (more: format=folder out=DIR)")
    c.whole("n", cfg.n, 1)
    c.whole("seed", cfg.seed, 0)
    c.whole("batch", cfg.batch, 1)
    c.whole("interp_steps", cfg.interp_steps, 2)
    c.whole("nrow", cfg.nrow, 1, allow_none=True)
    c.number("temperature", cfg.temperature, 0, low_open=True)
    c.boolean("ema", cfg.ema)
    c.boolean("interp", cfg.interp)
    c.device("device", cfg.device)
    _class_keys(cfg)
    if cfg.format == "folder":
        c.writable_dir("out", cfg.out)
    else:
        c.output_file("out", cfg.out, (".png",))


def _class_keys(cfg: DictConfig) -> None:
    """class= and classes= name classes by index or name (whether the checkpoint has them
    is checked once it is read)."""
    def is_class(v: Any) -> bool:
        return (c.is_int(v) and v >= 0) or (isinstance(v, str) and bool(v.strip()))

    one, many = cfg.get("class"), cfg.get("classes")
    if one is not None:
        c.require(is_class(one), "class", one, "a class index (0, 1, ...) or a class name")
    if many is not None:
        ok = is_class(many) or (isinstance(many, ListConfig | list) and len(many) > 0
                                and all(is_class(v) for v in many))
        c.require(ok, "classes", many, "a list of class indices or names, e.g. classes=[0,3,7]")


RECONSTRUCT_CHOICES = {"mode": ("recon", "interp", "neighbors", "encode"),
                       "split": ("auto", "train", "heldout", "all"),
                       "metric": ("euclidean", "cosine")}


def validate_reconstruct(cfg: DictConfig) -> None:
    check_missing(cfg, {"ckpt": "pass a checkpoint of an encoder model, e.g. "
                                "ckpt=outputs/<run>/checkpoints/last.pt"})
    c.checkpoint_file("ckpt", cfg.ckpt)
    for key, valid in RECONSTRUCT_CHOICES.items():
        c.choice(key, cfg[key], valid)
    for key in ("n", "k", "batch"):
        c.whole(key, cfg[key], 1)
    if cfg.mode != "encode":  # the other modes draw one grid
        c.whole("n", cfg.n, 1, MAX_GRID, note=" for one grid")
        c.whole("k", cfg.k, 1, MAX_GRID, note=" for one grid")
    c.whole("seed", cfg.seed, 0)
    c.whole("pool", cfg.pool, 1, allow_none=True, note=" (null: every training image)")
    c.whole("nrow", cfg.nrow, 1, allow_none=True)
    c.number("temperature", cfg.temperature, 0, low_open=True, allow_none=True,
             note=" (null: the model's default, O-GAN 0.9, BiGAN-QP 1.0)")
    c.boolean("ema", cfg.ema)
    c.device("device", cfg.device)
    validate_data(cfg.get("data"))
    if cfg.images:
        c.existing_dir("images", cfg.images, "a folder of images")
    if cfg.out:
        exts = (".npy",) if cfg.mode == "encode" else (".png",)
        c.output_file("out", cfg.out, exts)
