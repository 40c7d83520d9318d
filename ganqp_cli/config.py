"""Config validation and building objects from config nodes.

`validate` is the one place that checks user values before work starts; it names the
offending key and what would be valid. `make` instantiates a `_target_` node and turns
constructor errors into the same kind of message.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganqp_cli.errors import UserError

AMP_MODES = ("off", "bf16", "fp16")


def _require(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise UserError(f"{key}={value!r} is not valid: {valid}.")


def missing_keys(cfg: DictConfig) -> list[str]:
    return sorted(OmegaConf.missing_keys(cfg))


def check_missing(cfg: DictConfig, hints: dict[str, str] | None = None) -> None:
    hints = hints or {}
    for key in missing_keys(cfg):
        hint = hints.get(key, f"set it on the command line, e.g. {key}=VALUE")
        raise UserError(f"{key} is required but not set: {hint}.")


def amp_mode(value: Any) -> str:
    return "off" if value is False or value is None else str(value)


def validate(cfg: DictConfig, world: int = 1) -> None:
    """Check a training config; raises UserError naming the first offending key."""
    check_missing(cfg, {"data.root": "data sets read from disk need data.root=PATH "
                                     "(a folder of images)"})
    res = cfg.res
    _require(isinstance(res, int) and (res == 0 or (16 <= res <= 1024 and res & (res - 1) == 0)),
             "res", res, "a power of two from 16 to 1024 (16, 32, 64, 128, 256, 512, 1024), "
             "or 0 for point data such as data=ring8")
    t = cfg.train
    _require(isinstance(cfg.objective.d_steps, int) and cfg.objective.d_steps >= 1,
             "objective.d_steps", cfg.objective.d_steps, "a whole number >= 1")
    for key in ("iters", "batch_size", "log_every", "sample_n"):
        _require(isinstance(t[key], int) and t[key] >= 1, f"train.{key}", t[key],
                 "a whole number >= 1")
    for key in ("sample_every", "ckpt_every", "keep_ckpts", "workers", "threads"):
        _require(isinstance(t[key], int) and t[key] >= 0, f"train.{key}", t[key],
                 "a whole number >= 0 (0 turns it off)")
    _require(t.batch_size % world == 0, "train.batch_size", t.batch_size,
             f"the global batch must divide evenly over the {world} processes")
    _require(isinstance(t.ema, int | float) and 0 <= t.ema < 1, "train.ema", t.ema,
             "a decay in [0, 1) (0 turns the EMA generator off)")
    _require(amp_mode(t.amp) in AMP_MODES, "train.amp", t.amp, "off, bf16 or fp16")
    dev = str(cfg.device)
    _require(dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:"), "device", dev,
             "auto, cpu, cuda or cuda:N")
    if dev.startswith("cuda"):
        import torch
        _require(torch.cuda.is_available(), "device", dev,
                 "CUDA is not available on this machine; use device=cpu or device=auto")
    for key in ("opt_d", "opt_g"):
        node = cfg.objective[key]
        _require(isinstance(node, DictConfig) and "_target_" in node, f"objective.{key}", node,
                 "an optimiser node such as {_target_: torch.optim.Adam, lr: 2e-4}")


# Keys of a group's node that are the loop's, not the constructor's: an objective's critic
# steps, optimisers and critic-network choice (arch.sn/arch.d_norm interpolate them), and a
# data set's run preset (res, arch.width, train.* interpolate it).
NOT_ARGUMENTS = {"objective": ("d_steps", "opt_d", "opt_g", "sn", "d_norm"),
                 "data": ("preset",)}


def constructor_node(node: DictConfig, key: str) -> DictConfig:
    """`node` less the keys of NOT_ARGUMENTS[key] (a copy; `node` is left as it is)."""
    drop = NOT_ARGUMENTS.get(key, ())
    if not any(k in node for k in drop):
        return node
    spec = OmegaConf.to_container(node, resolve=True)
    return OmegaConf.create({k: v for k, v in spec.items() if k not in drop})


def make(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """Instantiate `node` (config key `key`); constructor errors become UserErrors."""
    try:
        return instantiate(constructor_node(node, key), **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, TypeError | ValueError):
            raise UserError(f"{key}: {cause}. Check the keys under {key} (`--cfg job` shows "
                            "them).") from None
        raise


def make_optimizer(node: DictConfig, key: str, params: list) -> Any:
    """An optimiser from its node; `betas=[0,0.9]` as typed on a command line is accepted
    (torch wants floats, Hydra parses 0 as an int)."""
    spec = OmegaConf.to_container(node, resolve=True)
    if isinstance(spec.get("betas"), list | tuple):
        spec["betas"] = [float(b) for b in spec["betas"]]
    return make(OmegaConf.create(spec), key, params=params)
