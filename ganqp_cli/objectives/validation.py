"""`validate_objective`: every key of an `objective` node checked before any work."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig

from ganqp_cli.keyspec import check_node, flag, one_of, optimiser, whole

# The loop's part of an objective's recipe (config.NOT_ARGUMENTS), not passed to the class.
LOOP_KEYS = {"d_steps": whole(1), "opt_d": optimiser, "opt_g": optimiser, "sn": flag,
             "d_norm": one_of("bn", "none")}


def validate_objective(node: DictConfig | Mapping) -> None:
    """Refuse a bad `objective.*` value (a non-positive GAN-QP lambda, an unknown distance,
    ...) with the usual one-paragraph message naming the key."""
    check_node(node, "objective", LOOP_KEYS)
