"""f-GAN (Nowozin et al. 2016, arXiv 1606.00709): variational estimation of an
f-divergence D_f(P||Q) = E_Q[f(dP/dQ)].

The critic maximises F(V) = E_P[g_f(V(x))] - E_Q[f*(g_f(V(x)))], where g_f is the output
activation (mapping the critic's raw output V into the domain of the conjugate f*) and
f*(t) = sup_u (t u - f(u)). At the optimum g_f(V(x)) = f'(p(x)/q(x)) and F = D_f(P||Q).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import one_of
from ganqp_cli.objectives.classic import OutputLoss

Fn = Callable[[torch.Tensor], torch.Tensor]
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Divergence:
    """One row of the f-GAN paper's Table 2 (and Table 6 for the activations).

    `conj_act(v)` is f*(g_f(v)) simplified by hand so that it stays finite for any v (the
    composition of the two table entries overflows or takes log of 0 for large |v|);
    `conjugate` is f* itself, for checking the simplification. `boundary` is the raw output
    v with g_f(v) = f'(1), the optimal critic's value where p = q (real and fake alike)."""

    f: Fn
    activation: Fn
    conjugate: Fn
    conj_act: Fn
    boundary: float = 0.0


DIVERGENCES: dict[str, Divergence] = {
    "kl": Divergence(
        f=lambda u: u * torch.log(u),
        activation=lambda v: v,
        conjugate=lambda t: torch.exp(t - 1),
        conj_act=lambda v: torch.exp(v - 1),
        boundary=1.0),                                  # f'(1) = 1, g_f = identity
    "reverse-kl": Divergence(
        f=lambda u: -torch.log(u),
        activation=lambda v: -torch.exp(-v),
        conjugate=lambda t: -1 - torch.log(-t),
        conj_act=lambda v: v - 1),                      # -1 - log(exp(-v))
    "pearson": Divergence(
        f=lambda u: (u - 1).square(),
        activation=lambda v: v,
        conjugate=lambda t: t.square() / 4 + t,
        conj_act=lambda v: v.square() / 4 + v),
    "hellinger": Divergence(
        f=lambda u: (u.sqrt() - 1).square(),
        activation=lambda v: 1 - torch.exp(-v),
        conjugate=lambda t: t / (1 - t),
        conj_act=lambda v: torch.expm1(v)),             # (1 - e^-v) / e^-v
    "js": Divergence(
        f=lambda u: -(u + 1) * torch.log((1 + u) / 2) + u * torch.log(u),
        activation=lambda v: LOG2 - F.softplus(-v),
        conjugate=lambda t: -torch.log(2 - torch.exp(t)),
        conj_act=lambda v: F.softplus(v) - LOG2),       # -log(2 sigmoid(-v))
    "gan": Divergence(
        f=lambda u: u * torch.log(u) - (u + 1) * torch.log(u + 1),
        activation=lambda v: -F.softplus(-v),
        conjugate=lambda t: -torch.log(1 - torch.exp(t)),
        conj_act=lambda v: F.softplus(v)),              # -log(1 - sigmoid(v))
}


class FGAN(OutputLoss):
    """f-GAN with divergence `divergence` (kl, reverse-kl, pearson, hellinger, js, gan).

    The critic minimises -F(V). The generator, with `g_form: trick` (the paper's practical
    choice), maximises E_Q[g_f(V(G(z)))]; with `g_form: minimax` it minimises F, i.e.
    -E_Q[f*(g_f(V(G(z))))]."""

    KEYS = {"divergence": one_of(*DIVERGENCES), "g_form": one_of("trick", "minimax")}

    def __init__(self, name: str = "fgan", divergence: str = "gan", g_form: str = "trick"
                 ) -> None:
        super().__init__(name)
        if divergence not in DIVERGENCES:
            raise UserError(f"objective.divergence={divergence!r}; valid: "
                            f"{', '.join(DIVERGENCES)}.")
        if g_form not in ("trick", "minimax"):
            raise UserError(f"objective.g_form={g_form!r}; valid: trick, minimax.")
        self.divergence, self.g_form = divergence, g_form
        self.div = DIVERGENCES[divergence]
        self.score_threshold = self.div.boundary

    def d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.div.conj_act(f).mean() - self.div.activation(r).mean()

    def g_loss(self, f: torch.Tensor) -> torch.Tensor:
        if self.g_form == "minimax":
            return -self.div.conj_act(f).mean()
        return -self.div.activation(f).mean()
