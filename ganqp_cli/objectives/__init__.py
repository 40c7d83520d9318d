"""GAN objectives. Each is one class (critic loss, generator loss, optional hooks) plus one
YAML in conf/objective/; the training loop only calls the `Objective` interface."""

from ganqp_cli.objectives.base import Models, Objective
from ganqp_cli.objectives.classic import (
    LSGAN,
    SGAN,
    WGAN,
    WGANGP,
    Hinge,
    OutputLoss,
    WGANDiv,
)
from ganqp_cli.objectives.encoders import OGAN, BiGANQP
from ganqp_cli.objectives.fgan import FGAN
from ganqp_cli.objectives.qp import GANQP
from ganqp_cli.objectives.relativistic import RpGAN
from ganqp_cli.objectives.validation import validate_objective

__all__ = ["FGAN", "GANQP", "LSGAN", "OGAN", "SGAN", "WGAN", "WGANGP", "BiGANQP", "Hinge",
           "Models", "Objective", "OutputLoss", "RpGAN", "WGANDiv", "validate_objective"]
