"""Differentiable augmentation of the critic's inputs (`aug=` group): none, DiffAugment, ADA.

The loop's calls: `aug = build_augment(cfg.aug)`, once `aug.attach(models, objective, shape)`,
per iteration `aug.update(objective, models, real, z, seen)`, at log time `aug.stats()`, and
`aug.state_dict()` / `load_state_dict()` in checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig

from ganqp_cli.augment.ada import ADA
from ganqp_cli.augment.ops import set_uniform, uniform
from ganqp_cli.augment.pipeline import Augment, DiffAugment
from ganqp_cli.config import make
from ganqp_cli.keyspec import check_node

__all__ = ["ADA", "Augment", "DiffAugment", "build_augment", "set_uniform", "uniform",
           "validate_aug"]


def validate_aug(node: DictConfig | Mapping) -> None:
    """Refuse a bad `aug.*` value before any work."""
    check_node(node, "aug")


def build_augment(node: DictConfig) -> Augment:
    return make(node, "aug")
