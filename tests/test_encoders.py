"""BiGAN-QP and O-GAN: the losses against independent computations, the stop-gradient
routing, reference settings by resolution, and short digits runs that learn an encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from PIL import Image
from torch import nn

from ganqp_cli.config import make
from ganqp_cli.networks import QPArch
from ganqp_cli.objectives import OGAN, BiGANQP, Models
from ganqp_cli.objectives.encoders import BASES, pearson, standardise
from tests.conftest import read_metrics, torchrun
from tests.encoder_runs import COMMON, measure, trained

# Tests here share the runs of tests/encoder_runs.py: one worker trains each once.
pytestmark = pytest.mark.xdist_group("encoder_runs")

SHAPE = (1, 16, 16)


def composed(*overrides: str):
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def arch() -> QPArch:
    return QPArch(z_dim=8, width=0.125)


def batch(seed: int = 0, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g) * 2 - 1, torch.randn(n, 8, generator=g)


def corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(u, v)[0, 1] for u, v in zip(a, b, strict=True)])


# -- building blocks ------------------------------------------------------------------------
def test_pearson_and_standardise_match_numpy():
    a, b = torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    assert np.allclose(pearson(a, b).numpy(), corr_rows(a.numpy(), b.numpy()), atol=1e-6)
    assert torch.allclose(pearson(a, 3 * a + 2), torch.ones(5), atol=1e-6)
    assert torch.allclose(pearson(a, -a), -torch.ones(5), atol=1e-6)
    n = standardise(a)
    assert torch.allclose(n.mean(1), torch.zeros(5), atol=1e-6)
    assert torch.allclose(n.std(1, unbiased=False), torch.ones(5), atol=1e-5)


def test_reference_settings_by_resolution():
    o, b = OGAN(), BiGANQP()
    assert [o.lam_for(r) for r in (16, 128, 256, 512)] == [0.5, 0.5, 1.0, 1.0]
    assert b.betas_for(128) == (2.0, 3.0) and b.betas_for(256) == (4.0, 6.0)
    assert OGAN(lam=0.25).lam_for(256) == 0.25
    assert BiGANQP(beta2=1.0).betas_for(256) == (4.0, 1.0)
    cfg = composed("objective=o-gan")
    assert cfg.objective.base == "gan-qp" and cfg.objective.d_steps == 1
    opt = make(cfg.objective.opt_d, "opt", params=[nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.RMSprop)
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["alpha"] == 0.99
    cfg = composed("objective=bigan-qp")
    assert cfg.objective.lam == 10.0 and cfg.objective.d_steps == 2


def test_o_gan_encoder_is_the_critic_registered_once():
    m = OGAN().build(arch(), SHAPE)
    assert m.encoder is m.D and m.E is None
    assert not any(k.startswith("E.") for k in m.state_dict())
    assert m.D(torch.zeros(2, *SHAPE)).shape == (2, 8)


def test_bigan_networks_and_optimiser_sides():
    obj = BiGANQP(hidden=32)
    m = obj.build(arch(), SHAPE)
    assert obj.critic_modules(m) == [m.D] and obj.generator_modules(m) == [m.G, m.E]
    x, z = batch()
    assert m.encoder is m.E and m.E(x).shape == (6, 8) and m.D(x, z).shape == (6, 1)


# -- losses against independent computations ------------------------------------------------
@pytest.mark.parametrize("base", list(BASES))
def test_o_gan_losses(base):
    obj = OGAN(base=base, lam=0.7)
    m = obj.build(arch(), SHAPE).eval()  # running BN statistics: repeatable forward passes
    real, z = batch()
    fake = m.G(z)
    e_real, e_fake = m.D(real).detach().double().numpy(), m.D(fake).detach().double().numpy()
    r, f = e_real.mean(1), e_fake.mean(1)
    rho = corr_rows(z.numpy(), e_fake).mean()
    if base == "gan-qp":
        mse = ((real - fake) ** 2).flatten(1).mean(1).detach().double().numpy()
        d_adv = np.mean(-(r - f) + 0.25 * (r - f) ** 2 / mse)
        g_adv = -f.mean()
    elif base == "sgan":
        d_adv = np.mean(np.log1p(np.exp(-r))) + np.mean(np.log1p(np.exp(f)))
        g_adv = np.mean(np.log1p(np.exp(-f)))
    else:
        d_adv = np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))
        g_adv = -f.mean()
    d_loss, d_stats = obj.critic_loss(m, real, z)
    g_loss, g_stats = obj.generator_loss(m, real, z)
    assert d_loss.item() == pytest.approx(d_adv - 0.7 * rho, abs=1e-5)
    assert g_loss.item() == pytest.approx(g_adv - 0.7 * rho, abs=1e-5)
    assert d_stats["rho"].item() == pytest.approx(rho, abs=1e-5)
    # Codes: N(E(x)); `ganqp reconstruct` decodes them as G(0.9 N(E(x))).
    code = obj.encode(m, real)
    assert torch.allclose(code, standardise(m.D(real)))
    assert obj.default_temperature == 0.9


def test_bigan_critic_loss_and_free_critic_maximum():
    obj = BiGANQP(hidden=32)
    m = obj.build(arch(), SHAPE).eval()
    real, z = batch()
    fake, e = m.G(z), m.E(real)
    dT = (m.D(real, e) - m.D(fake, z)).flatten().double()
    d = ((real - fake).abs().flatten(1).mean(1) + (e - z).abs().mean(1)).double()
    expected = (-dT + dT ** 2 / (2 * 10 * d)).mean()
    assert obj.critic_loss(m, real, z)[0].item() == pytest.approx(expected.item(), rel=1e-5)

    # A free critic on the two pairs (x_r, E(x_r)) and (G(z), z): the maximised critic
    # objective is lambda * d / 2 (the point-mass value of the QP divergence), reached at
    # dT = lambda * d, a stationary point of the loss.
    class Free(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.t = nn.Parameter(torch.zeros(2, dtype=torch.float64))

        def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
            is_real = (x == alpha).flatten(1).all(1)
            return torch.where(is_real, self.t[0], self.t[1]).unsqueeze(1)

    alpha, beta = torch.full((1, *SHAPE), 0.5).double(), torch.full((1, *SHAPE), -0.25).double()
    code_r, z0 = torch.full((1, 8), 1.5).double(), torch.full((1, 8), 0.25).double()

    class Const(nn.Module):
        def __init__(self, value: torch.Tensor) -> None:
            super().__init__()
            self.value = value

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            return self.value.expand(inp.shape[0], *self.value.shape[1:])

    pm = Models(G=Const(beta), D=Free(), E=Const(code_r))
    d = 0.75 + 1.25  # mean |alpha - beta| + mean |E(alpha) - z0|
    with torch.no_grad():
        pm.D.t.copy_(torch.tensor([10 * d, 0.0]))
    loss = obj.critic_loss(pm, alpha.expand(4, -1, -1, -1), z0.expand(4, -1))[0]
    (grad,) = torch.autograd.grad(loss, pm.D.t)
    assert loss.item() == pytest.approx(-10 * d / 2, rel=1e-9)
    assert torch.allclose(grad, torch.zeros(2, dtype=torch.float64), atol=1e-9)


def _grads(loss: torch.Tensor, net: nn.Module) -> float:
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True,
                                retain_graph=True)
    return sum(0.0 if g is None else g.abs().sum().item() for g in grads)


def test_bigan_guide_terms_train_one_side_each():
    """beta1 ||z - E(G_ng(z))||^2 trains E only; beta2 ||x - G(E_ng(x))||^2 trains G only."""
    m = BiGANQP(hidden=32).build(arch(), SHAPE).eval()
    real, z = batch()

    def loss(b1: float, b2: float) -> torch.Tensor:
        return BiGANQP(hidden=32, beta1=b1, beta2=b2).generator_loss(m, real, z)[0]

    base = loss(0.0, 0.0)
    guide_z, guide_x = loss(1.0, 0.0) - base, loss(0.0, 1.0) - base
    assert guide_z.item() == pytest.approx(
        F.mse_loss(m.E(m.G(z)), z).item(), rel=1e-5)
    assert guide_x.item() == pytest.approx(
        F.mse_loss(m.G(m.E(real)), real).item(), rel=1e-5)
    assert _grads(guide_z, m.G) == 0.0 and _grads(guide_z, m.E) > 0
    assert _grads(guide_x, m.E) == 0.0 and _grads(guide_x, m.G) > 0
    assert _grads(base, m.G) > 0 and _grads(base, m.E) > 0  # E[dT] trains both


# -- short runs: the models learn an encoder --------------------------------------------------
@pytest.mark.parametrize("name", ["o-gan", "o-gan-sgan", "o-gan-hinge", "bigan-qp"])
def test_held_out_reconstruction_beats_other_image_baseline(name, tmp_path_factory):
    got = measure(trained(name, tmp_path_factory))
    print(name, got)  # the numbers in docs/encoders.md come from this line
    assert got["heldout"] == 180  # 10% of 1,797 digits, never seen in training
    assert got["error"] <= 0.7 * got["baseline"], got
    if name.startswith("o-gan"):
        assert got["rho"] >= 0.6, got


@pytest.mark.parametrize("name", ["o-gan", "bigan-qp"])
def test_sample_command_works_for_encoder_models(name, cli, tmp_path, tmp_path_factory):
    out = tmp_path / "s.png"
    r = cli("sample", f"ckpt={trained(name, tmp_path_factory)}", "n=4", f"out={out}")
    assert r.code == 0, r
    arr = np.asarray(Image.open(out))
    assert arr.shape == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2) and arr[2:18, 2:18].std() > 10


def test_training_excludes_the_held_out_digits(tmp_path_factory):
    state = torch.load(trained("o-gan", tmp_path_factory), weights_only=True)
    assert state["config"]["data"]["holdout"] == 0.1
    data = make(composed(*COMMON).data, "data", res=16)
    assert len(data) == 1797 - 180


def test_two_processes_train_bigan_qp(tmp_path):
    """torchrun with 2 gloo processes: G and E (one optimiser) and the joint critic are
    averaged over the ranks and stay in sync. (O-GAN's run is in docs/encoders.md.)"""
    run = tmp_path / "run"
    r = torchrun("train", "objective=bigan-qp", "objective.hidden=32", "res=16",
                 "arch.width=0.125", "arch.z_dim=16", "data.holdout=0.1", "train.batch_size=8",
                 "train.iters=3", "train.log_every=1", "train.sample_every=0",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cpu x2" in r.stdout and "parameters and buffers identical on all 2 ranks" in r.stdout
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [1, 2, 3]
    assert all(row["g_guide_x"] is not None and row["g_guide_z"] is not None for row in rows)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iter"] == 3 and any(k.startswith("E.") for k in state["models"])
