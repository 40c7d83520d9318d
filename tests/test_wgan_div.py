"""WGAN-div's math through the class's own loss code: the penalty on a linear critic, and the
maximised critic objective between two point masses against its closed form."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module
from torch import nn

from ganqp_cli.config import make
from ganqp_cli.objectives import Models, WGANDiv
from tests.test_objectives_math import maximise_critic

F64 = torch.float64
ALPHA = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=F64)
BETA = torch.tensor([1.0, 0.3, -0.4, 0.25], dtype=F64)


class Point(nn.Module):
    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.x = nn.Parameter(x.clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.x.expand(z.shape[0], -1)


def test_penalty_on_a_linear_critic_is_k_times_the_weight_norm_to_the_p():
    obj = WGANDiv(k=1.5, p=3.0)
    D = nn.Linear(4, 1).double()
    real = torch.randn(6, 4, dtype=F64)
    fake = torch.randn(6, 4, dtype=F64)
    pen, norm = obj.penalty(D, real, fake)  # the gradient of w.x + b is w at every mix
    w = D.weight.detach().norm().item()
    assert norm.item() == pytest.approx(w, rel=1e-12)
    assert pen.item() == pytest.approx(1.5 * w ** 3, rel=1e-12)
    m = Models(G=Point(BETA), D=D)
    loss, stats = obj.critic_loss(m, ALPHA.expand(6, -1), torch.zeros(6, 1, dtype=F64))
    want = (D(BETA) - D(ALPHA)).item() + 1.5 * w ** 3
    assert loss.item() == pytest.approx(want, rel=1e-12)
    assert stats["div"].item() == pytest.approx(1.5 * w ** 3, rel=1e-12)


@pytest.mark.parametrize("k,p", [(2.0, 6.0), (1.0, 2.0), (0.5, 3.0)])
def test_maximised_critic_objective_between_point_masses(k, p):
    """sup_T T(a) - T(b) - k E||grad T||^p over mixes of a and b is reached by a linear T
    (Jensen along the segment): max_t t d - k t^p = (1 - 1/p) d (d / (k p))^(1 / (p - 1))."""
    obj = WGANDiv(k=k, p=p)
    D = nn.Linear(4, 1).double()
    m = Models(G=Point(BETA), D=D)
    real, z = ALPHA.expand(8, -1), torch.zeros(8, 1, dtype=F64)
    best = maximise_critic(obj, m, real, z, list(D.parameters()))
    d = (ALPHA - BETA).norm().item()
    want = (1 - 1 / p) * d * (d / (k * p)) ** (1 / (p - 1))
    assert best.item() == pytest.approx(want, rel=1e-8)
    w = D.weight.detach()[0]  # the optimal weight points from b to a
    assert torch.allclose(w / w.norm(), (ALPHA - BETA) / d, atol=1e-6)


def test_wgan_div_yaml_carries_the_papers_settings():
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=["objective=wgan-div", "data=celebahq"])
    obj = make(cfg.objective, "objective")
    assert type(obj) is WGANDiv and (obj.k, obj.p, obj.name) == (2.0, 6.0, "wgan-div")
    t = cfg.objective
    assert t.d_steps == 5 and cfg.arch.sn is False and cfg.arch.d_norm == "none"
    for node in (t.opt_d, t.opt_g):
        assert node._target_ == "torch.optim.Adam" and node.lr == 2e-4
        assert list(node.betas) == [0.5, 0.999]
