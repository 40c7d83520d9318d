"""The objectives GAN-QP is compared with: WGAN (weight clipping), WGAN-GP, WGAN-div, and the
losses used with a spectrally normalised critic (WGAN-SN, SGAN-SN, LSGAN-SN, hinge-SN).

Spectral normalisation is a property of the critic network, not of the loss, so the `-sn`
variants are these classes with `arch.sn: true` in their YAML.
"""

from __future__ import annotations

import torch

from ganqp_cli.distributed import global_rand
from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import NON_NEGATIVE, POSITIVE, REAL, number, one_of
from ganqp_cli.objectives import losses
from ganqp_cli.objectives.base import Models, Objective, Stats
from ganqp_cli.objectives.gradients import input_gradient
from ganqp_cli.objectives.losses import full
from ganqp_cli.objectives.shared import share


class OutputLoss(Objective):
    """An objective whose losses depend only on the critic's outputs: `d_loss(r, f)` on the
    outputs for a real batch and a fake batch, `g_loss(f)` on the outputs for fakes. Real and
    fake pass the critic separately (separate BatchNorm statistics, as in GAN-QP)."""

    def d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, m: Models, real: torch.Tensor, fake: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return full(m.D(real)).flatten(), full(m.D(fake)).flatten()

    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        fake = m.G(z)
        r, f = self.outputs(m, real, fake)
        share(fake=fake, real_score=r, fake_score=f)
        loss = self.d_loss(r, f)
        return loss, {"d_real": r.mean().detach(), "d_fake": f.mean().detach()}

    def generator_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        f = full(m.D(m.G(z))).flatten()
        return self.g_loss(f), {}


class WGAN(OutputLoss):
    """Critic maximises E[T(x_r)] - E[T(x_f)]; the generator maximises E[T(x_f)].

    `clip` > 0 (the original WGAN, Arjovsky et al. 2017) clamps every critic parameter to
    [-clip, clip] after each critic step; `clip: null` leaves the Lipschitz constraint to the
    network (WGAN-SN: spectral norm in every critic layer)."""

    KEYS = {"clip": number(0, low_open=True, allow_none=True)}

    def __init__(self, name: str = "wgan", clip: float | None = 0.01) -> None:
        super().__init__(name)
        if clip is not None and not clip > 0:
            raise UserError(f"objective.clip={clip!r}: the weight-clipping bound must be > 0, "
                            "or null for no clipping.")
        self.clip = clip

    def d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return losses.critic_wgan(r, f)

    def g_loss(self, f: torch.Tensor) -> torch.Tensor:
        return losses.gen_wgan(f)

    @torch.no_grad()
    def after_critic_step(self, m: Models) -> None:
        if self.clip is None:
            return
        for module in self.critic_modules(m):
            for p in module.parameters():
                p.clamp_(-self.clip, self.clip)


def mix_grad_norms(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor
                   ) -> torch.Tensor:
    """||grad_x T(x_hat)|| per sample on x_hat = x_f + eps (x_r - x_f), eps ~ U(0, 1) per
    sample, differentiable in the critic's parameters."""
    real, fake = real.detach(), fake.detach()
    # eps for the global batch, this rank's rows: the same run on any number of processes
    eps = global_rand(real.shape[0], *[1] * (real.ndim - 1), device=real.device,
                      dtype=real.dtype)
    x_hat = (fake + eps * (real - fake)).requires_grad_(True)
    (grad,) = input_gradient(D(x_hat), x_hat)  # loss-scaled under fp16
    return grad.flatten(1).norm(dim=1)


class WGANGP(WGAN):
    """WGAN with a gradient penalty (Gulrajani et al. 2017): the critic minimises
    E[T(x_f)] - E[T(x_r)] + gp * E[(||grad T(x_hat)|| - center)^2] on random interpolates
    x_hat = x_f + eps (x_r - x_f), eps ~ U(0, 1) per sample. The penalty is per sample, so the
    critic must not use BatchNorm (the YAML sets arch.d_norm: none)."""

    KEYS = {"gp": NON_NEGATIVE, "center": NON_NEGATIVE}
    penalty_key = "gp"
    differentiates_critic_twice = True

    def __init__(self, name: str = "wgan-gp", gp: float = 10.0, center: float = 1.0) -> None:
        super().__init__(name, clip=None)
        if not gp >= 0:
            raise UserError(f"objective.gp={gp!r}: the penalty weight must be >= 0.")
        self.gp, self.center = gp, center

    def penalty_of(self, norm: torch.Tensor) -> torch.Tensor:
        return self.gp * (norm - self.center).square().mean()

    def penalty(self, D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the penalty, mean ||grad||) on interpolates of real and fake."""
        norm = mix_grad_norms(D, real, fake)
        return self.penalty_of(norm), norm.mean().detach()

    def critic_loss(self, m: Models, real: torch.Tensor, z: torch.Tensor
                    ) -> tuple[torch.Tensor, Stats]:
        fake = m.G(z)
        r, f = self.outputs(m, real, fake)
        share(fake=fake, real_score=r, fake_score=f)
        pen, grad_norm = self.penalty(m.D, real, fake)
        loss = self.d_loss(r, f) + pen
        return loss, {"d_real": r.mean().detach(), "d_fake": f.mean().detach(),
                      self.penalty_key: pen.detach(), "grad_norm": grad_norm}


class WGANDiv(WGANGP):
    """WGAN-div (Wu et al. 2018), the Wasserstein divergence W_{k,p}: the critic minimises
    E[T(x_f)] - E[T(x_r)] + k * E[||grad T(x_hat)||^p] on random mixes x_hat of real and fake
    samples (as WGAN-GP's interpolates), without a Lipschitz constraint: the penalty pulls
    gradients towards 0, not 1. The generator maximises E[T(x_f)]."""

    KEYS = {"k": POSITIVE, "p": number(1, low_open=True)}
    penalty_key = "div"

    def __init__(self, name: str = "wgan-div", k: float = 2.0, p: float = 6.0) -> None:
        super().__init__(name, gp=0.0)
        self.k, self.p = k, p

    def penalty_of(self, norm: torch.Tensor) -> torch.Tensor:
        return self.k * norm.pow(self.p).mean()


class SGAN(OutputLoss):
    """The standard GAN (Goodfellow et al. 2014) on logits: the critic minimises binary
    cross-entropy; the generator minimises -log sigmoid(T(x_f)) (`g_form: nonsaturating`) or
    log(1 - sigmoid(T(x_f))) (`g_form: minimax`, which saturates)."""

    KEYS = {"g_form": one_of("nonsaturating", "minimax")}
    score_threshold = 0.0  # logits

    def __init__(self, name: str = "sgan", g_form: str = "nonsaturating") -> None:
        super().__init__(name)
        if g_form not in ("nonsaturating", "minimax"):
            raise UserError(f"objective.g_form={g_form!r}; valid: nonsaturating, minimax.")
        self.g_form = g_form

    def d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return losses.critic_sgan(r, f)

    def g_loss(self, f: torch.Tensor) -> torch.Tensor:
        if self.g_form == "minimax":
            return -torch.nn.functional.softplus(f).mean()
        return losses.gen_sgan_nonsaturating(f)


class LSGAN(OutputLoss):
    """Least squares GAN (Mao et al. 2017): the critic minimises 0.5 E[(T(x_r) - b)^2] +
    0.5 E[(T(x_f) - a)^2], the generator 0.5 E[(T(x_f) - c)^2]. a=0, b=1, c=1 by default;
    a=-1, b=1, c=0 is the paper's other choice (b - c = 1, b - a = 2: Pearson chi^2)."""

    KEYS = {"a": REAL, "b": REAL, "c": REAL}

    def __init__(self, name: str = "lsgan", a: float = 0.0, b: float = 1.0, c: float = 1.0
                 ) -> None:
        super().__init__(name)
        self.a, self.b, self.c = a, b, c
        self.score_threshold = (a + b) / 2  # halfway between the fake and real targets

    def d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return losses.critic_lsgan(r, f, self.a, self.b)

    def g_loss(self, f: torch.Tensor) -> torch.Tensor:
        return losses.gen_lsgan(f, self.c)


class Hinge(OutputLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): the critic minimises
    E[relu(1 - T(x_r))] + E[relu(1 + T(x_f))], the generator -E[T(x_f)]."""

    score_threshold = 0.0

    def __init__(self, name: str = "hinge") -> None:
        super().__init__(name)

    def d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return losses.critic_hinge(r, f)

    def g_loss(self, f: torch.Tensor) -> torch.Tensor:
        return losses.gen_hinge(f)
