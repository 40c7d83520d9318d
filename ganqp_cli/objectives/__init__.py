"""GAN objectives. Each is one class (critic loss, generator loss, optional hooks) plus one
YAML in conf/objective/; the training loop only calls the `Objective` interface."""

from ganqp_cli.objectives.base import Models, Objective
from ganqp_cli.objectives.qp import GANQP

__all__ = ["GANQP", "Models", "Objective"]
