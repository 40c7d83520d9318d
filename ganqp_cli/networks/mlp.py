"""Fully connected networks for point data."""

from __future__ import annotations

from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import POSITIVE, flag, one_of, text, whole
from ganqp_cli.networks.common import EncoderFromCritic, Generator, Shape, _ch, _maybe_sn
from ganqp_cli.networks.conditional import concat_generator, projection_critic


class MLPArch(EncoderFromCritic):
    """Fully connected networks for point data such as `data=ring8` (shape `(D,)`)."""

    KEYS = {"name": text, "z_dim": whole(1), "hidden": whole(1), "depth": whole(1),
            "width": POSITIVE, "sn": flag, "d_norm": one_of("none")}
    RESOLUTIONS = (0,)

    def __init__(self, name: str = "mlp", z_dim: int = 2, hidden: int = 128, depth: int = 3,
                 width: float = 1.0, sn: bool = False, d_norm: str = "none") -> None:
        self.name, self.z_dim, self.depth, self.sn = name, z_dim, depth, sn
        self.hidden = _ch(hidden, width)
        if d_norm != "none":
            raise UserError(f"arch.d_norm={d_norm!r}: arch=mlp has no critic normalisation; "
                            "valid: none.")

    def _mlp(self, d_in: int, d_out: int, act: nn.Module, bias: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(self.depth):
            layers += [nn.Linear(d_in if i == 0 else self.hidden, self.hidden, bias=bias),
                       act]
        layers.append(nn.Linear(self.hidden, d_out, bias=bias))
        return nn.Sequential(*layers)

    def generator(self, shape: Shape, extra: int = 0) -> Generator:
        """`extra`: inputs besides z (a class embedding, networks.conditional)."""
        if len(shape) != 1:
            raise UserError(f"arch=mlp is for point data; got images of shape {tuple(shape)}. "
                            "Use arch=gan-qp or arch=dcgan.")
        return Generator(self.z_dim, self._mlp(self.z_dim + extra, shape[0], nn.ReLU(True)))

    def trunk(self, shape: Shape, bias: bool = True) -> tuple[nn.Sequential, int]:
        body = self._mlp(shape[0], self.hidden, nn.LeakyReLU(0.2, True), bias)[:-1]
        return body, self.hidden

    def critic(self, shape: Shape, out_dim: int = 1, bias: bool = True) -> nn.Module:
        if len(shape) != 1:
            raise UserError(f"arch=mlp is for point data; got images of shape {tuple(shape)}.")
        return _maybe_sn(self._mlp(shape[0], out_dim, nn.LeakyReLU(0.2, True), bias), self.sn)

    # class-conditional networks (cond=true): z + class embedding, projection critic
    conditional_generator = concat_generator

    def conditional_critic(self, shape: Shape, n_classes: int, out_dim: int = 1,
                           bias: bool = True) -> nn.Module:
        if len(shape) != 1:
            raise UserError(f"arch=mlp is for point data; got images of shape {tuple(shape)}.")
        return projection_critic(self, shape, n_classes, out_dim, bias)
