"""Experiment trackers, the `logger` config group (conf/logger/*.yaml, after
lightning-hydra-template): `logger=tensorboard`, `logger=[tensorboard,mlflow]`, ... Each
option adds a node `logger.<name>` with its `_target_` (a Tracker class) and keys; a node
set to null is off. None by default: the run directory's own files are always written.

`validate_loggers` runs before any work (a missing package names the extra that installs
it); `build` makes the trackers on rank 0.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ganqp_cli import keyspec
from ganqp_cli.errors import UserError
from ganqp_cli.trackers.base import Tracker

# What the loop passes to every tracker; not keys of the config.
PASSED = ("run_dir", "resolved", "start")


def _nodes(cfg: DictConfig) -> dict[str, DictConfig]:
    node = cfg.get("logger")
    if node is None:
        return {}
    if not isinstance(node, DictConfig):
        raise UserError(f"logger={node} is not a set of loggers: choose options of the config "
                        "group, e.g. logger=tensorboard or logger=[tensorboard,mlflow].")
    return {str(k): v for k, v in node.items() if v is not None}


def validate_loggers(cfg: DictConfig) -> None:
    for name, node in _nodes(cfg).items():
        prefix = f"logger.{name}"
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise UserError(f"{prefix} is not a logger: a node with _target_ (a Tracker "
                            "class), as conf/logger/*.yaml have.")
        cls = keyspec.target_class(OmegaConf.to_container(node, resolve=True), prefix)
        if cls.package and importlib.util.find_spec(cls.package) is None:
            raise UserError(f"logger={name} needs the {cls.package} package, which is not "
                            f"installed: pip install 'ganqp[{cls.extra}]' (in a checkout: "
                            f"pip install -e '.[{cls.extra}]'), or leave logger={name} out.")
        for key in PASSED:
            if key in node:
                raise UserError(f"{prefix}.{key} is set by the run itself, not the config.")
        keyspec.check_node(node, prefix, cls=cls)


def _make(node: DictConfig, prefix: str, run_dir: Path, resolved: dict[str, Any],
          start: int) -> Tracker:
    """The tracker of one node (its keys plain values: the resolved config it is given holds
    `_target_` nodes that must not be built)."""
    keys = OmegaConf.to_container(node, resolve=True)
    cls = keyspec.target_class(keys, prefix)
    keys.pop("_target_")
    try:
        return cls(run_dir=run_dir, resolved=resolved, start=start, **keys)
    except Exception as err:  # noqa: BLE001 - a store or server that refuses: said, exit 2
        why = " ".join(str(err).split())[:400] or type(err).__name__
        raise UserError(f"{prefix} could not start ({type(err).__name__}: {why}). Check its "
                        f"keys (--cfg job shows them) or leave it out.") from err


def build(cfg: DictConfig, run_dir: Path, start: int) -> list[Tracker]:
    """The trackers of `logger`, each continuing this run directory's tracker run. The
    random states are put back afterwards: a tracker's own draws (run ids) must not change
    the run, which is the same with any set of trackers."""
    nodes = _nodes(cfg)
    if not nodes:
        return []
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            return [_make(node, f"logger.{name}", run_dir, config, start)
                    for name, node in nodes.items()]
        finally:
            random.setstate(py)
            np.random.set_state(np_state)
