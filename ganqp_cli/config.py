"""Building objects from config nodes, and small config helpers.

`make` instantiates a `_target_` node and turns constructor errors into a UserError naming
the key. Checking user values is ganqp_cli.validation's job (before any work starts).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganqp_cli.errors import UserError

AMP_MODES = ("off", "bf16", "fp16", "auto")


def missing_keys(cfg: DictConfig) -> list[str]:
    return sorted(OmegaConf.missing_keys(cfg))


def check_missing(cfg: DictConfig, hints: dict[str, str] | None = None) -> None:
    hints = hints or {}
    for key in missing_keys(cfg):
        hint = hints.get(key, f"set it on the command line, e.g. {key}=VALUE")
        raise UserError(f"{key} is required but not set: {hint}.")


def amp_mode(value: Any) -> str:
    return "off" if value is False or value is None else str(value)


# Keys of a group's node that are the loop's, not the constructor's: an objective's critic
# steps, optimisers, critic-network choice (arch.sn/arch.d_norm interpolate them) and
# regularisers (reg.r1/r2/lecam interpolate objective.reg), a
# data set's run preset (res, arch.width, train.* interpolate it), and arch.sync_bn (the
# loop converts a built network's BatchNorm layers: ganqp_cli.syncbn).
NOT_ARGUMENTS = {"objective": ("d_steps", "opt_d", "opt_g", "sn", "d_norm", "reg"),
                 "data": ("preset",), "arch": ("sync_bn",)}


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


def make_optimizer(node: DictConfig, key: str, params: list, device: Any = None) -> Any:
    """An optimiser from its node; `betas=[0,0.9]` as typed on a command line is accepted
    (torch wants floats, Hydra parses 0 as an int). On CUDA, an optimiser class that takes
    `fused` (Adam, AdamW, SGD, ...) gets `fused=True`: one kernel per step instead of one
    per parameter and operation, and no host sync under a fused GradScaler. A node that sets
    `fused` or `foreach` itself keeps its choice; the class stays the node's `_target_`."""
    spec = OmegaConf.to_container(node, resolve=True)
    if isinstance(spec.get("betas"), list | tuple):
        spec["betas"] = [float(b) for b in spec["betas"]]
    if fuses(spec, device):
        spec["fused"] = True
    return make(OmegaConf.create(spec), key, params=params)


def fuses(spec: dict[str, Any], device: Any) -> bool:
    """Whether the optimiser of `spec` gets `fused=True` on `device` (make_optimizer)."""
    if getattr(device, "type", device) != "cuda" or "fused" in spec or spec.get("foreach"):
        return False
    module, _, name = str(spec.get("_target_", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return "fused" in inspect.signature(cls).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return False  # validation names a bad _target_; here it simply stays unfused
