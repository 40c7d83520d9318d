"""Augmenting every image the critic sees, without the objectives knowing.

`attach` puts a forward pre-hook on each critic module that takes images (the critic itself,
a pair critic's trunk, a joint critic's image branch: networks.image_modules), so every call
the objective makes (real and fake, critic and generator steps, WGAN-GP's interpolates, a
regulariser's gradient) sees augmented images, while the objective's own tensors (GAN-QP's
pair distance d(x_r, x_f), BiGAN's joint distance, the generator's output) stay as they are.
The hook acts only while the module is in training mode and the augmentation is active, so
evaluation-mode use (e.g. O-GAN's encode() for reconstructions) and `disabled()` see the
images untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ganqp_cli import checks
from ganqp_cli.augment.ops import POLICIES, apply_ops
from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import number, text
from ganqp_cli.networks import image_modules


def policy_ops(key: str, policy: Any) -> tuple[str, ...]:
    """`color,translation,cutout` (a string or a list) -> the operations, in that order."""
    parts = policy.split(",") if isinstance(policy, str) else policy
    names = [str(p).strip() for p in parts] if isinstance(parts, list | tuple) else []
    ok = bool(names) and len(set(names)) == len(names) and set(names) <= set(POLICIES)
    checks.require(ok, key, policy, "a non-empty list of distinct parts from "
                   + ", ".join(POLICIES) + ", e.g. aug.policy=[color,translation,cutout]")
    return tuple(op for name in names for op in POLICIES[name])


class Augment:
    """No augmentation (`aug=none`); the interface the training loop calls."""

    KEYS = {"name": text}

    def __init__(self, name: str = "none") -> None:
        self.name = name
        self.active = True
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def enabled(self) -> bool:
        return False

    def attach(self, models: nn.Module, objective: Any, shape: tuple[int, ...] | None = None
               ) -> None:
        """Augment the image input of every critic module of `objective` on `models`."""
        if not self.enabled:
            return
        if shape is not None and len(shape) != 3:
            raise UserError(f"aug={self.name} augments images, but the data are points of "
                            f"shape {tuple(shape)}; use aug=none.")
        for critic in objective.critic_modules(models):
            for module in image_modules(critic):
                self._hooks.append(module.register_forward_pre_hook(self._hook))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _hook(self, module: nn.Module, args: tuple) -> tuple | None:
        if not (self.active and module.training):
            return None
        return (self(args[0]), *args[1:])

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Critic calls inside see the images untouched."""
        was, self.active = self.active, False
        try:
            yield
        finally:
            self.active = was

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def update(self, objective: Any, models: nn.Module, real: torch.Tensor, z: torch.Tensor,
               seen: int) -> None:
        """Once per iteration, after the critic steps: `real`, `z` of the last critic step,
        `seen` the real images the critic saw since the last call (global batch x steps)."""

    def stats(self) -> dict[str, float]:
        """Values for metrics.jsonl."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class DiffAugment(Augment):
    """DiffAugment (Zhao et al. 2020): every operation of `policy` on every critic input."""

    KEYS = {"policy": policy_ops, "translation": number(0, 1, low_open=True),
            "cutout": number(0, 1, low_open=True)}

    def __init__(self, name: str = "diffaugment",
                 policy: Any = ("color", "translation", "cutout"),
                 translation: float = 0.125, cutout: float = 0.5) -> None:
        super().__init__(name)
        self.ops = policy_ops("aug.policy", list(policy) if not isinstance(policy, str)
                              else policy)
        self.ratios = {"translation": translation, "cutout": cutout}

    @property
    def enabled(self) -> bool:
        return True

    def probability(self) -> float:
        return 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise UserError(f"aug={self.name} augments image batches (N, C, H, W); the critic "
                            f"got shape {tuple(x.shape)}.")
        return apply_ops(x, self.ops, self.probability(), self.ratios)
