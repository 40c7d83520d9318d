"""Mixed precision on the CPU, so that CI runs the AMP code of every objective: bf16 and fp16
autocast (with a CPU GradScaler for fp16), the loss-scaled input gradient of penalties, loss
reductions in float32, spectral norm's power iteration outside autocast, train.amp=auto."""

from __future__ import annotations

import importlib.resources
import math

import pytest
import torch
from hydra import compose, initialize_config_module
from torch import nn

from ganqp_cli.distributed import Dist
from ganqp_cli.objectives import GANQP, WGANGP, Models
from ganqp_cli.objectives.gradients import active_scale, input_gradient, scaling
from ganqp_cli.spectral import spectral_normalise
from ganqp_cli.training.setup import Setup, resolve_amp, seed_all
from tests.conftest import read_metrics

OBJECTIVES = sorted(p.name[:-5] for p in
                    (importlib.resources.files("ganqp_cli.conf") / "objective").iterdir()
                    if p.name.endswith(".yaml"))
# 16 px, tiny widths; BiGAN-QP's joint critic head is 1024 wide by default.
FAST = ["res=16", "arch.width=0.125", "train.batch_size=8", "train.iters=5",
        "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0", "train.sample_n=4",
        "train.workers=0"]
EXTRA = {"bigan-qp": ["objective.hidden=32"]}


def test_every_objective_of_the_table_and_beyond_is_covered():
    """The packaged option list the parametrisation is built from is the full one (the 16 of
    the first round, wgan-div and rpgan), not an empty or partial resource listing."""
    assert {"gan-qp", "wgan-gp", "sgan-sn", "bigan-qp", "o-gan", "wgan-div",
            "rpgan"} <= set(OBJECTIVES)
    assert len(OBJECTIVES) == 18


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_trains_under_cpu_autocast(cli, tmp_path, name, amp):
    run = tmp_path / "run"
    r = cli("train", *FAST, f"objective={name}", *EXTRA.get(name, []), f"train.amp={amp}",
            f"hydra.run.dir={run}")
    assert r.code == 0, r
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [1, 2, 3, 4, 5]
    for row in rows:  # non-finite values are written as null
        assert all(v is not None and math.isfinite(v) for v in row.values()), row
    # bf16 has fp32's range: nothing overflows. fp16 starts at the scaler's 2^16 and skips
    # the steps whose scaled gradients overflow while the scale calibrates (at most 1 per
    # update here: 5 iterations x (critic steps + 1) updates).
    skipped = rows[-1]["skipped_steps"]
    assert skipped == 0 if amp == "bf16" else skipped < 10, rows[-1]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    if amp == "fp16":
        assert state["scaler_d"]["scale"] <= 2.0 ** 16  # the scaler ran (and is saved)
    else:
        assert state["scaler_d"] == {}  # disabled for bf16


def _setup(*overrides: str) -> Setup:
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*FAST, *overrides])
    seed_all(0)
    return Setup(cfg, Dist(), torch.device("cpu"))


@pytest.mark.parametrize("name", OBJECTIVES)
def test_losses_are_reduced_in_float32_under_bf16_autocast(name):
    s = _setup(f"objective={name}", *EXTRA.get(name, []), "train.amp=bf16")
    real = s.data.to_model(s.data.tensor[:8])
    z = torch.randn(8, s.z_dim)
    with s.autocast():
        assert s.models.G(z).dtype == torch.bfloat16  # autocast is on
        for loss_fn in (s.objective.critic_loss, s.objective.generator_loss):
            loss, stats = loss_fn(s.models, real, z)
            assert loss.dtype == torch.float32, loss_fn
            assert all(v.dtype == torch.float32 for v in stats.values()), stats


class Outputs(nn.Module):
    """A critic that returns preset outputs, one per call (also as a pair critic)."""

    def __init__(self, *outs: torch.Tensor) -> None:
        super().__init__()
        self.outs = list(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outs.pop(0)

    def both(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(a), self(b)


def test_gan_qp_subtracts_critic_outputs_in_float32():
    # Both outputs are exact in bf16 (8 significant bits), their difference 301.0078125 is
    # not: subtracted in bf16 it rounds to 302, in float32 it is exact.
    r, f = torch.tensor([[300.0]]), torch.tensor([[-1.0078125]])
    assert torch.equal(r.bfloat16().float(), r) and torch.equal(f.bfloat16().float(), f)
    assert float(r.bfloat16() - f.bfloat16()) != 301.0078125
    x = torch.zeros(1, 1)
    for critic in ("unary", "pair"):
        obj = GANQP(critic=critic)
        D = Outputs(r.bfloat16(), f.bfloat16())
        dT = obj.delta(Models(G=nn.Identity(), D=D), x, x)
        assert dT.dtype == torch.float32 and dT.tolist() == [301.0078125], critic


def test_input_gradient_is_loss_scaled_like_the_amp_recipe():
    """Under fp16 autocast a gradient of ~1.6e-8 underflows to 0 in the backward pass;
    scaled by the grad scaler and unscaled afterwards it survives, as the recipe promises."""
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False),
                        nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        for layer in net:
            layer.weight.fill_(1e-3)
    x = torch.randn(3, 4, requires_grad=True)
    (exact,) = input_gradient(net(x), x)  # float32: 4 * 4 * (1e-3)^3 per entry
    torch.testing.assert_close(exact, torch.full_like(x, 1.6e-8), rtol=1e-5, atol=0)
    with torch.autocast("cpu", dtype=torch.float16):
        (unscaled,) = input_gradient(net(x), x)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
        with scaling(scaler):
            assert float(active_scale()) == 2.0 ** 12  # before the scaler's first use
            (scaled,) = input_gradient(net(x), x)
            scaler.scale(torch.ones(()))  # its scale is now a tensor: used as it is
            assert active_scale() is scaler._get_scale_async()
    assert active_scale() is None  # the context is left as it was
    assert float(unscaled.detach().abs().max()) == 0.0  # underflowed
    assert scaled.dtype == torch.float32
    torch.testing.assert_close(scaled, exact, rtol=3e-3, atol=0)


def test_wgan_gp_penalty_under_fp16_matches_float32():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    obj = WGANGP()
    torch.manual_seed(1)
    ref, ref_norm = obj.penalty(D, real, fake)
    torch.manual_seed(1)  # the same interpolation eps
    with torch.autocast("cpu", dtype=torch.float16), \
            scaling(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)):
        pen, norm = obj.penalty(D, real, fake)
    assert pen.dtype == torch.float32
    torch.testing.assert_close(pen, ref, rtol=2e-2, atol=0)
    torch.testing.assert_close(norm, ref_norm, rtol=5e-3, atol=0)
    pen.backward()  # the penalty's own backward pass through the double-backward graph
    for layer in (D[1], D[3]):  # (the last bias has no effect on the input gradient)
        assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


def test_spectral_norm_power_iteration_runs_outside_autocast(monkeypatch):
    seen = []
    mv = torch.mv

    def recording_mv(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return mv(*args, **kwargs)

    torch.manual_seed(0)
    D = spectral_normalise(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(64, 1)))
    monkeypatch.setattr(torch, "mv", recording_mv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = D(torch.randn(2, 1, 6, 6))
    assert out.dtype == torch.bfloat16  # the layers themselves still autocast
    assert seen and not any(seen), seen  # 2 layers x (power step + sigma) mv calls


def test_amp_auto_is_bf16_on_a_gpu_that_has_it_else_off(monkeypatch):
    assert resolve_amp("auto", torch.device("cpu")) == "off"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp("auto", torch.device("cuda", 0)) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp("auto", torch.device("cuda", 0)) == "off"
    assert resolve_amp("fp16", torch.device("cpu")) == "fp16"
