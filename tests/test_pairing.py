"""The relativistic objectives pair real and fake by index: GAN-QP (L1 and L2 distances, unary
and pair critics) and RpGAN, checked on batches of distinct pairs.

The point-mass tests of test_objectives_math.py use identical samples, so every pair there
has the same distance and the same score difference: a loss that replaced GAN-QP's per-pair
distance by the batch mean, or RpGAN's per-pair softplus by one of batch means, passes them.
Here every pair differs, the closed forms are computed per pair by hand, and each test also
shows that the unpaired variants give other numbers (so the test can fail).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganqp_cli.objectives import GANQP, Models, RpGAN
from ganqp_cli.regularizers import Regularizers
from tests.test_objectives_math import maximise_critic

F64 = torch.float64
# Four pairs of 3-pixel "images", each pair at its own distance (L1: 1/3, 1, 2/3, 7/3).
REAL = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
FAKE = [[0.0, 0.0, -1.0], [-0.5, 1.5, -0.5], [-1.0, 2.5, 1.5], [3.0, -2.0, 2.0]]
W, C = [0.5, -1.0, 2.0], 0.25  # the linear critic T(x) = w . x + c
LAM = 10.0


def dot(w: list[float], x: list[float]) -> float:
    return sum(a * b for a, b in zip(w, x, strict=True))


def distance(r: list[float], f: list[float], kind: str) -> float:
    diff = [a - b for a, b in zip(r, f, strict=True)]
    if kind == "l1":
        return sum(abs(v) for v in diff) / len(diff)
    return math.sqrt(sum(v * v for v in diff) / len(diff))


class FixedGenerator(nn.Module):
    """G(z) = the batch FAKE, a parameter (for d loss / d G(z))."""

    def __init__(self, fake: list[list[float]]) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.tensor(fake, dtype=F64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.x


def linear_critic() -> nn.Linear:
    D = nn.Linear(3, 1).double()
    with torch.no_grad():
        D.weight.copy_(torch.tensor([W], dtype=F64))
        D.bias.fill_(C)
    return D


def batches() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(REAL, dtype=F64), torch.zeros(len(REAL), 1, dtype=F64)


# -- GAN-QP ---------------------------------------------------------------------------------

def qp_closed_form(distances: list[float]) -> tuple[float, list[float]]:
    """Critic loss mean_i(-dT_i + dT_i^2 / (2 lam d_i)) of the linear critic and its gradient
    in w: mean_i(-(1 - dT_i / (lam d_i)) (r_i - f_i))."""
    n = len(REAL)
    dT = [dot(W, r) - dot(W, f) for r, f in zip(REAL, FAKE, strict=True)]
    loss = sum(-t + t * t / (2 * LAM * d) for t, d in zip(dT, distances, strict=True)) / n
    grad = [sum(-(1 - t / (LAM * d)) * (r[k] - f[k])
                for t, d, r, f in zip(dT, distances, REAL, FAKE, strict=True)) / n
            for k in range(3)]
    return loss, grad


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_gan_qp_unary_critic_loss_divides_each_pair_by_its_own_distance(kind):
    per_pair = [distance(r, f, kind) for r, f in zip(REAL, FAKE, strict=True)]
    assert len(set(per_pair)) == len(per_pair)  # every pair at its own distance
    m = Models(G=FixedGenerator(FAKE), D=linear_critic())
    real, z = batches()
    loss = GANQP(lam=LAM, distance=kind).critic_loss(m, real, z)[0]
    (grad,) = torch.autograd.grad(loss, m.D.weight)
    value, expected_grad = qp_closed_form(per_pair)
    assert loss.item() == pytest.approx(value, rel=1e-12)
    assert grad.flatten().tolist() == pytest.approx(expected_grad, rel=1e-12)
    # The batch-mean distance (or the pairs shuffled) gives another value: this test sees it.
    mean_d = sum(per_pair) / len(per_pair)
    assert abs(qp_closed_form([mean_d] * 4)[0] - value) > 1e-3
    shuffled = Models(G=FixedGenerator(FAKE[1:] + FAKE[:1]), D=linear_critic())
    assert abs(GANQP(lam=LAM, distance=kind).critic_loss(shuffled, real, z)[0].item()
               - value) > 1e-3


class FreeCritic(nn.Module):
    """A free critic on the 8 points of REAL and FAKE (one value each, unary), or on the 8
    ordered pairs (r_i, f_i), (f_i, r_i) (pair critic): the supremum over all critics."""

    def __init__(self) -> None:
        super().__init__()
        self.points = torch.tensor(REAL + FAKE, dtype=F64)
        self.t = nn.Parameter(torch.zeros(8, dtype=F64))      # unary T(x)
        self.u = nn.Parameter(torch.zeros(4, 2, dtype=F64))   # T(r_i, f_i), T(f_i, r_i)

    def index(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach()[:, None, :] == self.points[None]).all(2).float().argmax(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.t[self.index(x)].unsqueeze(1)

    def both(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.index(a) % 4  # a is the real batch (or the fakes, in the same order)
        first = (self.index(a) < 4).long()
        rf, fr = self.u[pair, 1 - first], self.u[pair, first]
        return rf.unsqueeze(1), fr.unsqueeze(1)


@pytest.mark.parametrize("critic", ["unary", "pair"])
@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_gan_qp_optimal_critic_difference_is_lambda_times_each_pairs_distance(kind, critic):
    """The maximiser of -dT + dT^2 / (2 lam d) per pair is dT_i = lam d(x_r_i, x_f_i): the
    adaptive Lipschitz bound of each pair, not of the batch on average."""
    obj = GANQP(lam=LAM, distance=kind, critic=critic)
    m = Models(G=FixedGenerator(FAKE), D=FreeCritic())
    real, z = batches()
    value = maximise_critic(obj, m, real, z, [m.D.t, m.D.u])
    dT = obj.delta(m, real, m.G(z)).detach()
    per_pair = torch.tensor([distance(r, f, kind) for r, f in zip(REAL, FAKE, strict=True)],
                            dtype=F64)
    torch.testing.assert_close(dT, LAM * per_pair, rtol=1e-7, atol=1e-9)
    assert value.item() == pytest.approx(LAM * per_pair.mean().item() / 2, rel=1e-9)
    assert (dT - LAM * per_pair.mean()).abs().max() > 1.0  # the batch mean's maximiser differs


def test_gan_qp_pair_critic_loss_on_distinct_pairs():
    """A bilinear pair critic T(a, b) = u . a + v . b: dT_i = (u - v) . (r_i - f_i)."""
    u, v = torch.tensor([1.0, 0.5, -0.5], dtype=F64), torch.tensor([-1.0, 0.5, 1.5], dtype=F64)

    class Bilinear(nn.Module):
        def both(self, a, b):
            return (a @ u + b @ v)[:, None], (b @ u + a @ v)[:, None]

    m = Models(G=FixedGenerator(FAKE), D=Bilinear())
    real, z = batches()
    loss, stats = GANQP(lam=LAM, distance="l2", critic="pair").critic_loss(m, real, z)
    dT = [dot((u - v).tolist(), [a - b for a, b in zip(r, f, strict=True)])
          for r, f in zip(REAL, FAKE, strict=True)]
    d = [distance(r, f, "l2") for r, f in zip(REAL, FAKE, strict=True)]
    expected = sum(-t + t * t / (2 * LAM * di) for t, di in zip(dT, d, strict=True)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["lip"].item() == pytest.approx(
        sum(abs(t) / (LAM * di) for t, di in zip(dT, d, strict=True)) / 4, rel=1e-12)


# -- RpGAN ----------------------------------------------------------------------------------

def softplus(t: float) -> float:
    return math.log1p(math.exp(t))


def sigmoid(t: float) -> float:
    return 1 / (1 + math.exp(-t))


def test_rpgan_losses_and_gradients_per_pair():
    m = Models(G=FixedGenerator(FAKE), D=linear_critic())
    real, z = batches()
    obj = RpGAN()
    dT = [dot(W, r) - dot(W, f) for r, f in zip(REAL, FAKE, strict=True)]
    assert len(set(dT)) == 4
    d_loss = obj.critic_loss(m, real, z)[0]
    assert d_loss.item() == pytest.approx(sum(softplus(-t) for t in dT) / 4, rel=1e-12)
    # d/dw of mean softplus(-dT_i) = -mean sigmoid(-dT_i) (r_i - f_i)
    (gw,) = torch.autograd.grad(d_loss, m.D.weight)
    assert gw.flatten().tolist() == pytest.approx(
        [-sum(sigmoid(-t) * (r[k] - f[k]) for t, r, f in zip(dT, REAL, FAKE, strict=True)) / 4
         for k in range(3)], rel=1e-12)
    g_loss = obj.generator_loss(m, real, z)[0]
    assert g_loss.item() == pytest.approx(sum(softplus(t) for t in dT) / 4, rel=1e-12)
    # d/d f_i of softplus(T(r_i) - T(f_i)) / 4 = -sigmoid(dT_i) w / 4: each fake is pushed
    # by its own partner's score difference.
    (gx,) = torch.autograd.grad(g_loss, m.G.x)
    expected = [-sigmoid(t) * wk / 4 for t in dT for wk in W]
    assert gx.flatten().tolist() == pytest.approx(expected, rel=1e-12)
    # Unpaired variants give other numbers: softplus of the batch means, and all pairs (i, j).
    mean_dT = sum(dT) / 4
    all_pairs = sum(softplus(-(dot(W, r) - dot(W, f))) for r in REAL for f in FAKE) / 16
    for other in (softplus(-mean_dT), all_pairs):
        assert abs(other - d_loss.item()) > 1e-2


def test_rpgan_with_r1_and_r2_has_the_closed_form_optimal_linear_critic():
    """1-D data, T(x) = w x: R1 and R2 are both w^2, so the critic minimises
    mean_i softplus(-w D_i) + gamma w^2 (D_i = r_i - f_i), whose root of
    -mean_i D_i sigmoid(-w D_i) + 2 gamma w is found here by bisection, without torch."""
    real, fake, gamma = [1.0, -0.5, 3.0, 0.25], [-1.0, 0.0, 0.5, 2.0], 0.3
    D = [r - f for r, f in zip(real, fake, strict=True)]

    def slope(w: float) -> float:
        return -sum(d * sigmoid(-w * d) for d in D) / len(D) + 2 * gamma * w

    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)

    critic = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        critic.weight.zero_()
    m = Models(G=FixedGenerator([[x] for x in fake]), D=critic)
    obj, reg = RpGAN(), Regularizers(r1=gamma, r2=gamma)
    real_t, z = torch.tensor(real, dtype=F64)[:, None], torch.zeros(4, 1, dtype=F64)
    opt = torch.optim.LBFGS([critic.weight], lr=1, max_iter=200, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = obj.critic_loss(m, real_t, z)[0] + reg.critic_penalty(obj, m, real_t, z, 0)[0]
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    # (input gradients are float32: ganqp_cli.objectives.gradients)
    assert critic.weight.item() == pytest.approx(lo, rel=1e-6)
    assert 0.1 < lo < 5  # a finite optimum: without R1 and R2 it would be at infinity


def test_rpgan_recipe_turns_on_r1_and_r2_and_the_command_line_wins():
    from tests.test_objectives_math import composed
    cfg = composed("objective=rpgan")
    assert (cfg.reg.r1, cfg.reg.r2, cfg.reg.lecam) == (0.05, 0.05, 0.0)
    assert (composed("objective=rpgan", "reg.r1=1").reg.r1, composed().reg.r1) == (1, 0.0)
    from ganqp_cli.regularizers import build_regularizers
    assert build_regularizers(cfg.reg).active
