"""Generator, critic and encoder architectures. Networks hold no loss code.

An arch object (chosen by the `arch` config group) builds the networks for a data shape:
`(C, H, W)` images or `(D,)` points. Objectives ask it for what they need: a generator,
a critic with one output, an encoder (a critic trunk with `out_dim` outputs and biases), and
`trunk(shape)` (the critic's stack without its last layer, and its feature count).
"""

from ganqp_cli.networks.common import (
    Generator,
    Reshape,
    Shape,
    image_modules,
    spectral_normalise,
)
from ganqp_cli.networks.conditional import ConditionalArch, conditioned, is_conditional
from ganqp_cli.networks.critics import JointCritic, PairCritic
from ganqp_cli.networks.dcgan import DCGANArch, QPArch
from ganqp_cli.networks.mlp import MLPArch
from ganqp_cli.networks.r3gan import R3GANArch
from ganqp_cli.networks.resnet import ResNetArch
from ganqp_cli.networks.validation import validate_arch

__all__ = ["ConditionalArch", "DCGANArch", "Generator", "JointCritic", "MLPArch", "PairCritic",
           "QPArch", "R3GANArch", "ResNetArch", "Reshape", "Shape", "conditioned",
           "image_modules", "is_conditional", "spectral_normalise", "validate_arch"]
