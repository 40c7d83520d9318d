"""`validate_objective`: every key of an `objective` node checked before any work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from ganqp_cli import checks
from ganqp_cli.keyspec import check_node, flag, one_of, optimiser, whole

REG_WEIGHTS = ("r1", "r2", "lecam")


def reg_recipe(key: str, value: Any) -> Any:
    """`objective.reg`: the regularisers an objective's recipe turns on (reg.* follow them)."""
    checks.require(isinstance(value, Mapping) and set(value) <= set(REG_WEIGHTS), key, value,
                   "a node of regulariser weights such as {r1: 0.05, r2: 0.05} (keys: "
                   + ", ".join(REG_WEIGHTS) + ")")
    for k, v in value.items():
        checks.number(f"{key}.{k}", v, 0)
    return value


# The loop's part of an objective's recipe (config.NOT_ARGUMENTS), not passed to the class.
LOOP_KEYS = {"d_steps": whole(1), "opt_d": optimiser, "opt_g": optimiser, "sn": flag,
             "d_norm": one_of("bn", "none"), "reg": reg_recipe}


def validate_objective(node: DictConfig | Mapping) -> None:
    """Refuse a bad `objective.*` value (a non-positive GAN-QP lambda, an unknown distance,
    ...) with the usual one-paragraph message naming the key."""
    check_node(node, "objective", LOOP_KEYS)
