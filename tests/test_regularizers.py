"""R1, R2 and LeCam (`reg.*`) against closed forms on linear critics, whose input gradient
is their weight vector, through each kind of critic score (unary, pair, joint, O-GAN's
mean of codes); lazy application; LeCam's anchors as checkpointed state; R2 and LeCam
reusing what the critic loss computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ganqp_cli.networks import JointCritic, PairCritic
from ganqp_cli.objectives import GANQP, OGAN, SGAN, BiGANQP, Models, shared
from ganqp_cli.regularizers import Regularizers

F64 = torch.float64


def linear(d_in: int, d_out: int, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out).double()


def data(n: int = 5, d: int = 4, z_dim: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, z_dim, generator=g,
                                                                  dtype=F64)


def unary() -> tuple[GANQP, Models]:
    return GANQP(), Models(G=linear(2, 4, 1), D=linear(4, 1, 2))


def test_r1_and_r2_are_half_gamma_times_the_squared_weight_norm():
    obj, m = unary()
    real, z = data()
    w2 = m.D.weight.square().sum().item()
    pen, stats = Regularizers(r1=3.0).critic_penalty(obj, m, real, z, step=0)
    assert pen.item() == pytest.approx(1.5 * w2, rel=1e-12)
    assert stats["reg_r1"].item() == pytest.approx(1.5 * w2, rel=1e-12)
    pen.backward()  # d/dw gamma/2 ||w||^2 = gamma w: the penalty trains the critic
    assert torch.allclose(m.D.weight.grad, 3.0 * m.D.weight)
    pen, stats = Regularizers(r2=0.5).critic_penalty(obj, m, real, z, step=0)
    assert pen.item() == pytest.approx(0.25 * w2, rel=1e-12) and set(stats) == {"reg_r2"}


def test_lazy_regularisation_every_k_steps_scaled_by_k():
    obj, m = unary()
    real, z = data()
    w2 = m.D.weight.square().sum().item()
    reg = Regularizers(r1=2.0, every=4)
    values = [reg.critic_penalty(obj, m, real, z, step=s) for s in range(6)]
    assert [v[0].item() for v in values] == pytest.approx([4 * w2, 0, 0, 0, 4 * w2, 0])
    # the unscaled value is logged on every step (the last computed one), also after resume
    assert all(v[1]["reg_r1"].item() == pytest.approx(w2) for v in values)
    resumed = Regularizers(r1=2.0, every=4)
    resumed.load_state_dict(reg.state_dict())
    assert resumed.critic_penalty(obj, m, real, z, step=6)[1]["reg_r1"].item() == \
        pytest.approx(w2)


def test_lecam_against_its_formula_with_moving_anchors():
    obj, m = unary()
    reg = Regularizers(lecam=0.3, lecam_decay=0.9)
    w, b = m.D.weight.detach().numpy()[0], m.D.bias.item()
    anchors = None
    for seed in range(3):
        real, z = data(seed=seed)
        s_r = real.numpy() @ w + b
        s_f = m.G(z).detach().numpy() @ w + b
        means = np.array([s_r.mean(), s_f.mean()])
        anchors = means if anchors is None else 0.9 * anchors + 0.1 * means
        want = 0.3 * (np.mean(np.maximum(s_r - anchors[1], 0) ** 2)
                      + np.mean(np.maximum(anchors[0] - s_f, 0) ** 2))
        pen, stats = reg.critic_penalty(obj, m, real, z, step=seed)
        assert pen.item() == pytest.approx(want, rel=1e-5)
        assert stats["reg_lecam"].item() == pytest.approx(want, rel=1e-5)
    assert np.allclose(reg.state_dict()["lecam_anchors"], anchors, rtol=1e-6)
    fresh = Regularizers(lecam=0.3, lecam_decay=0.9)
    fresh.load_state_dict(reg.state_dict())
    real, z = data(seed=9)
    a = reg.critic_penalty(obj, m, real, z, step=3)[0]
    assert torch.equal(a, fresh.critic_penalty(obj, m, real, z, step=3)[0])


def test_r1_through_a_pair_critic_is_the_gradient_of_dT_in_the_real_image():
    obj = GANQP(critic="pair")
    trunk = linear(4, 3, 3)
    D = PairCritic(trunk, 3, hidden=4).double()
    D.head = linear(6, 1, 4)  # linear: dT(x, o) = (h1 - h2) . (W x - W o)
    m = Models(G=linear(2, 4, 1), D=D)
    real, z = data()
    h = D.head.weight.detach()[0]
    grad = trunk.weight.detach().T @ (h[:3] - h[3:])
    want = 0.5 * 2.0 * grad.square().sum().item()
    assert Regularizers(r1=2.0).critic_penalty(obj, m, real, z, 0)[0].item() == \
        pytest.approx(want, rel=1e-10)
    assert Regularizers(r2=2.0).critic_penalty(obj, m, real, z, 0)[0].item() == \
        pytest.approx(want, rel=1e-10)  # dT(f, r) = -dT(r, f): the same gradient norm


def test_r1_through_a_joint_critic_holds_the_encoder_fixed():
    obj = BiGANQP(hidden=4)
    features = linear(4, 3, 5)
    D = JointCritic(features, 3, 2, hidden=4).double()
    D.head = linear(5, 1, 6)
    m = Models(G=linear(2, 4, 1), D=D, E=linear(4, 2, 7))
    real, z = data()
    h = D.head.weight.detach()[0]
    grad = features.weight.detach().T @ h[:3]  # not + E's Jacobian: the code is detached
    want = 0.5 * grad.square().sum().item()
    assert Regularizers(r1=1.0).critic_penalty(obj, m, real, z, 0)[0].item() == \
        pytest.approx(want, rel=1e-10)
    # R2 scores (G(z), z): the same critic gradient in the image
    assert Regularizers(r2=1.0).critic_penalty(obj, m, real, z, 0)[0].item() == \
        pytest.approx(want, rel=1e-10)


def test_r1_through_o_gans_score_the_mean_of_its_codes():
    obj = OGAN()
    E = linear(4, 3, 8)
    m = Models(G=linear(3, 4, 1), D=E, E=E)
    real, z = data(z_dim=3)
    want = 0.5 * E.weight.detach().mean(0).square().sum().item()
    assert Regularizers(r1=1.0).critic_penalty(obj, m, real, z, 0)[0].item() == \
        pytest.approx(want, rel=1e-10)


def test_all_off_adds_nothing():
    obj, m = unary()
    real, z = data()
    pen, stats = Regularizers().critic_penalty(obj, m, real, z, 0)
    assert pen.item() == 0 and stats == {} and not Regularizers().active


def pair() -> tuple[GANQP, Models]:
    D = PairCritic(linear(4, 3, 3), 3, hidden=4).double()
    return GANQP(critic="pair"), Models(G=linear(2, 4, 1), D=D)


def joint() -> tuple[BiGANQP, Models]:
    D = JointCritic(linear(4, 3, 5), 3, 2, hidden=4).double()
    return BiGANQP(hidden=4), Models(G=linear(2, 4, 1), D=D, E=linear(4, 2, 7))


def ogan() -> tuple[OGAN, Models]:
    E = linear(4, 2, 8)
    return OGAN(), Models(G=linear(2, 4, 1), D=E, E=E)


def output_loss() -> tuple[SGAN, Models]:
    return SGAN(), Models(G=linear(2, 4, 1), D=linear(4, 1, 2))


@pytest.mark.parametrize("make", [unary, pair, joint, ogan, output_loss],
                         ids=["unary", "pair", "joint", "o-gan", "output-loss"])
def test_r2_and_lecam_reuse_the_steps_fakes_and_scores(make):
    """What the critic loss shared (its fake batch, its scores) gives the values of a
    penalty that regenerates and re-scores everything, without a generator forward pass,
    and with one critic pass (R2's, at the fakes) instead of three."""
    obj, m = make()
    real, z = data()
    for p in m.G.parameters():  # the critic step: the generator side is frozen
        p.requires_grad_(False)
    calls = {"G": 0, "D": 0}
    m.G.register_forward_hook(lambda *a: calls.__setitem__("G", calls["G"] + 1))
    score = obj.critic_score

    def counted(*a, **k):
        calls["D"] += 1
        return score(*a, **k)
    obj.critic_score = counted
    def reg() -> Regularizers:  # anchors far apart: both LeCam terms are non-zero
        r = Regularizers(r2=1.0, lecam=0.5)
        r.load_state_dict({"lecam_anchors": [5.0, -5.0]})
        return r

    fresh = reg().critic_penalty(obj, m, real, z, 0)
    assert calls == {"G": 1, "D": 3}  # the fakes again, R2's pass, LeCam's two passes
    with shared.recording() as seen:
        obj.critic_loss(m, real, z)
    calls.update(G=0, D=0)
    reused = reg().critic_penalty(obj, m, real, z, 0, seen)
    assert calls == {"G": 0, "D": 1}  # R2's pass only
    # (BiGAN-QP's and O-GAN's losses score in float32, critic_score keeps these float64)
    for k in ("reg_r2", "reg_lecam"):
        assert fresh[1][k].item() > 0.01
        assert reused[1][k].item() == pytest.approx(fresh[1][k].item(), rel=1e-6)
    assert reused[0].item() == pytest.approx(fresh[0].item(), rel=1e-6)


def test_restored_lazy_values_join_the_device_of_the_next_step():
    """A resumed run with reg.every > 1 logs the checkpoint's last R1 value until the next
    lazy step; it must be on the run's device (CPU tensors broke the log's GPU collective).
    The meta device stands in for a GPU here."""
    obj, m = unary()
    reg = Regularizers(r1=1.0, every=4)
    reg.load_state_dict({"lecam_anchors": None, "last": {"reg_r1": 0.25}})
    assert reg.state_dict()["last"] == {"reg_r1": 0.25}  # kept for the next checkpoint
    real, z = torch.zeros(5, 4, device="meta"), torch.zeros(5, 2, device="meta")
    total, stats = reg.critic_penalty(obj, m, real, z, step=1)  # not a lazy step
    assert total.device == stats["reg_r1"].device == real.device
