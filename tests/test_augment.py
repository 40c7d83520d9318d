"""Augmentation (`aug=`): each DiffAugment operation against values computed by hand from
chosen random numbers, its gradient, the hooks that put it in front of every critic input
(and nowhere else), ADA's controller, and exact resume of a run with ADA."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from ganqp_cli.augment import ADA, Augment, DiffAugment, set_uniform
from ganqp_cli.augment import ops as A
from ganqp_cli.networks import QPArch
from ganqp_cli.objectives import GANQP, OGAN, WGANGP, BiGANQP, Models
from tests.conftest import TINY, read_metrics

F64 = torch.float64
ON = torch.ones(2, dtype=F64)


def images(n: int = 2, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed),
                      dtype=F64) * 2 - 1


@contextlib.contextmanager
def draws(values: torch.Tensor):
    """Every augmentation draw returns `values` (its first k columns)."""
    previous = set_uniform(lambda n, k, device: values[:n, :k].to(device))
    try:
        yield
    finally:
        set_uniform(previous)


# -- the operations ------------------------------------------------------------------------
def test_colour_operations_match_their_formulas():
    x = images()
    u = torch.tensor([[0.75], [0.1]], dtype=F64)
    assert torch.equal(A.brightness(x, u, ON), x + torch.tensor([0.25, -0.4], dtype=F64)
                       .view(2, 1, 1, 1))
    mean_c = x.mean(1, keepdim=True)
    want = (x - mean_c) * torch.tensor([1.5, 0.2], dtype=F64).view(2, 1, 1, 1) + mean_c
    assert torch.allclose(A.saturation(x, u, ON), want, atol=1e-15)
    mean = x.mean((1, 2, 3), keepdim=True)
    want = (x - mean) * torch.tensor([1.25, 0.6], dtype=F64).view(2, 1, 1, 1) + mean
    assert torch.allclose(A.contrast(x, u, ON), want, atol=1e-15)
    off = torch.zeros(2, dtype=F64)  # switched off: the images themselves
    for op in (A.brightness, A.saturation, A.contrast):
        assert torch.equal(op(x, u, off), x)


def test_translation_moves_content_by_whole_pixels_with_zero_fill():
    x = images(h=16, w=16)
    # side 16, ratio 1/8: shifts in [-2, 2]; u -> floor(5 u) - 2
    u = torch.tensor([[0.99, 0.0], [0.5, 0.7]], dtype=F64)  # (dy, dx) = (2, -2), (0, 1)
    out = A.translation(x, u, ON, 0.125)
    want = torch.zeros_like(x)
    want[0, :, 2:, :14] = x[0, :, :14, 2:]
    want[1, :, :, 1:] = x[1, :, :, :15]
    assert torch.equal(out, want)
    assert torch.equal(A.translation(x, u, torch.zeros(2, dtype=F64), 0.125), x)


def test_cutout_zeroes_a_square_of_half_the_side():
    x = images(h=8, w=8)
    u = torch.tensor([[0.5, 0.25], [0.0, 0.99]], dtype=F64)  # centres (4, 2) and (0, 7)
    out = A.cutout(x, u, ON, 0.5)
    want = x.clone()
    want[0, :, 2:6, 0:4] = 0      # rows 4-2 .. 4+1, columns 2-2 .. 2+1
    want[1, :, 0:2, 5:8] = 0      # clipped at the border
    assert torch.equal(out, want)


def test_the_operations_are_differentiable_in_the_images():
    x = images().requires_grad_(True)
    u = torch.tensor([[0.3, 0.6, 0.2, 0.9, 0.1, 0.5, 0.5, 0.4]], dtype=F64).expand(2, -1)
    out = A.cutout(A.translation(A.contrast(x, u[:, 2:3], ON), u[:, 3:5], ON), u[:, 5:7], ON)
    (grad,) = torch.autograd.grad(out.sum(), x)
    eps = 1e-6  # central differences on a few pixels
    for idx in [(0, 0, 0, 0), (1, 2, 5, 3), (0, 1, 7, 7)]:
        d = torch.zeros_like(x)
        d[idx] = eps
        f = lambda t: A.cutout(A.translation(A.contrast(t, u[:, 2:3], ON), u[:, 3:5], ON),  # noqa: E731
                               u[:, 5:7], ON).sum()
        num = (f(x.detach() + d) - f(x.detach() - d)) / (2 * eps)
        assert grad[idx].item() == pytest.approx(num.item(), abs=1e-6)


def test_one_draw_per_batch_feeds_switches_then_operations():
    x = images(h=8, w=8)
    aug = DiffAugment(policy=["color", "translation"])
    assert aug.ops == ("brightness", "saturation", "contrast", "translation")
    # 4 switches, then 1 + 1 + 1 + 2 uniforms
    u = torch.tensor([[0.0] * 4 + [0.75, 0.5, 0.5, 0.99, 0.5]] * 2, dtype=F64)
    with draws(u):
        out = aug(x)
    want = A.translation(x + 0.25, torch.tensor([[0.99, 0.5]] * 2, dtype=F64), ON, 0.125)
    assert torch.allclose(out, want, atol=1e-15)


def test_ada_switches_each_operation_with_probability_p():
    x = images(n=2)
    ada = ADA(policy=["color"])
    ada.p = 0.5
    # sample 0: brightness on (0.2 < 0.5), sample 1: off (0.7); saturation/contrast off
    u = torch.tensor([[0.2, 0.9, 0.9, 0.75, 0.1, 0.1], [0.7, 0.9, 0.9, 0.75, 0.1, 0.1]],
                     dtype=F64)
    with draws(u):
        out = ada(x)
    assert torch.allclose(out[0], x[0] + 0.25, atol=1e-15)
    assert torch.equal(out[1], x[1])


# -- hooks: every critic input, nothing else ---------------------------------------------------
class Shift(Augment):
    """A visible stand-in augmentation: x + 100."""

    @property
    def enabled(self) -> bool:
        return True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + 100


class Recorder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x: torch.Tensor, *rest) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x, *rest)


SHAPE = (1, 16, 16)


def arch() -> QPArch:
    return QPArch(z_dim=8, width=0.125, d_norm="none")


def test_unary_critic_sees_augmented_images_but_the_qp_distance_does_not():
    obj = GANQP()
    m = obj.build(arch(), SHAPE)
    m.D = Recorder(m.D)
    Shift().attach(m, obj, SHAPE)
    real, z = torch.rand(4, *SHAPE) * 2 - 1, torch.randn(4, 8)
    _, stats = obj.critic_loss(m, real, z)
    fake = m.G(z)
    assert torch.allclose(m.D.seen[0], real + 100) and torch.allclose(m.D.seen[1], fake + 100)
    # the distance is the objective's, on the images as generated and loaded
    assert stats["dist"].item() == pytest.approx((real - fake).abs().mean().item(), rel=1e-6)
    m.D.seen.clear()
    obj.generator_loss(m, real, z)  # the fakes only: T(x_r) has no gradient for G
    assert len(m.D.seen) == 1 and torch.allclose(m.D.seen[0], fake + 100)


def test_pair_critic_augments_each_image_once_and_joint_critic_only_the_image():
    obj = GANQP(critic="pair", pair_hidden=8)
    m = obj.build(arch(), SHAPE)
    m.D.trunk = Recorder(m.D.trunk)
    Shift().attach(m, obj, SHAPE)
    real, z = torch.rand(3, *SHAPE), torch.randn(3, 8)
    obj.critic_loss(m, real, z)  # both(): the trunk runs once per image batch
    assert len(m.D.trunk.seen) == 2 and torch.allclose(m.D.trunk.seen[0], real + 100)

    bigan = BiGANQP(hidden=8)
    mb = bigan.build(arch(), SHAPE)
    mb.D.features = Recorder(mb.D.features)
    Shift().attach(mb, bigan, SHAPE)
    x, code = torch.rand(3, *SHAPE), torch.randn(3, 8)
    want = mb.D.head(torch.cat([mb.D.features.inner(x + 100), code], 1))
    assert torch.allclose(mb.D(x, code), want)
    assert torch.allclose(mb.E(x), mb.E(x.clone()))  # the encoder is not the critic


def test_o_gan_encode_in_eval_mode_and_disabled_see_the_images_untouched():
    obj = OGAN()
    m = obj.build(arch(), SHAPE)
    aug = Shift()
    aug.attach(m, obj, SHAPE)
    x = torch.rand(3, *SHAPE)
    m.eval()
    plain = obj.encode(m, x)
    aug.detach()
    assert torch.equal(plain, obj.encode(m, x))
    aug.attach(m, obj, SHAPE)
    m.train()
    with aug.disabled():
        a = m.D(x)
    aug.detach()
    assert torch.equal(a, m.D(x))


def test_gradient_penalties_see_the_augmented_critic():
    obj = WGANGP()
    m = obj.build(arch(), SHAPE)
    m.D = Recorder(m.D)
    Shift().attach(m, obj, SHAPE)
    obj.critic_loss(m, torch.rand(2, *SHAPE), torch.randn(2, 8))
    assert len(m.D.seen) == 3 and all(s.min() > 90 for s in m.D.seen)  # real, fake, x_hat


def test_point_data_are_refused():
    from ganqp_cli.errors import UserError
    obj = GANQP()
    with pytest.raises(UserError, match="aug=diffaugment augments images"):
        DiffAugment().attach(Models(nn.Linear(2, 2), nn.Linear(2, 1)), obj, (2,))


# -- ADA's controller ---------------------------------------------------------------------------
class Scored:
    """An objective stand-in whose critic scores are given numbers."""

    scores_need_other = False

    def __init__(self, real: list[float], fake: list[float], threshold: float | None) -> None:
        self.real, self.fake = torch.tensor(real), torch.tensor(fake)
        self.score_threshold = threshold

    def fake_batch(self, m, z):
        return torch.zeros(len(self.fake), 1)

    def critic_score(self, m, x, z=None, other=None):
        return self.fake if z is not None else self.real


def test_ada_moves_p_by_the_images_seen_towards_the_target():
    ada = ADA(interval=2, kimg=1.0, target=0.6)
    logits = Scored([1.0, 2.0, 3.0, -1.0], [], threshold=0.0)  # r_t = (3 - 1) / 4 = 0.5
    ada.update(logits, None, None, None, seen=100)
    assert ada.p == 0.0  # not yet: every 2nd call
    ada.p = 0.5
    ada.update(logits, None, None, None, seen=150)
    assert ada.rt == 0.5 and ada.p == pytest.approx(0.5 - 250 / 1000)
    # no threshold: the fakes' mean 1.5 is the reference; 3 of 4 reals above: r_t = 0.5
    shifts = Scored([1.0, 2.0, 3.0, 4.0], [1.0, 2.0], threshold=None)
    ada.update(shifts, None, None, torch.zeros(2, 1), seen=10)
    ada.update(shifts, None, None, torch.zeros(2, 1), seen=10)
    assert ada.rt == 0.5 and ada.p == pytest.approx(0.25 - 20 / 1000)
    over = Scored([5.0] * 4, [], threshold=0.0)  # r_t = 1 > 0.6: p goes up, at most to 1
    for _ in range(20):
        ada.update(over, None, None, None, seen=1000)
    assert ada.p == 1.0
    state = ada.state_dict()
    fresh = ADA()
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state == {"p": 1.0, "rt": 1.0, "calls": 24, "seen": 0}


def test_an_ada_run_logs_p_and_resumes_bitwise(cli, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*TINY, "aug=ada", "aug.interval=1", "aug.kimg=0.2", "reg.lecam=0.1",
            "train.ckpt_every=100", "train.sample_every=100", "train.log_every=1"]
    assert cli("train", *args, "train.iters=6", f"hydra.run.dir={one}").code == 0
    assert cli("train", *args, "train.iters=3", f"hydra.run.dir={two}").code == 0
    r = cli("train", *args, "train.iters=6", f"hydra.run.dir={two}")
    assert r.code == 0 and "resumed at iter 3" in r.out, r
    a = torch.load(one / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(two / "checkpoints" / "last.pt", weights_only=True)
    assert a["aug"] == b["aug"] and a["aug"]["p"] > 0 and a["reg"] == b["reg"]
    for k in a["models"]:
        assert torch.equal(a["models"][k], b["models"][k]), k
    rows_a, rows_b = read_metrics(one), read_metrics(two)
    assert [r["aug_p"] for r in rows_a] == [r["aug_p"] for r in rows_b]
    # 32 reals per iteration (batch 16, 2 critic steps), 200 images from p = 0 to 1
    assert rows_a[0]["aug_p"] == pytest.approx(0.16 if rows_a[0]["aug_rt"] > 0.6 else 0.0)
