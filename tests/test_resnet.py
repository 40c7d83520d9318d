"""`arch=resnet`: parameter counts against the published SNGAN networks, shapes, width, sn,
d_norm, the critic stacks the encoder models and the pair critic build from it, and a few
training iterations of each kind of objective on digits."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ganqp_cli.networks import ResNetArch
from ganqp_cli.networks.resnet import DownBlock, UpBlock
from tests.conftest import TINY, assert_encoder_models_build, read_metrics

_spec = importlib.util.spec_from_file_location(
    "resnet_params", Path(__file__).resolve().parents[1] / "scripts" / "resnet_params.py")
resnet_params = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resnet_params)
REFERENCE, counts = resnet_params.REFERENCE, resnet_params.counts


@pytest.mark.parametrize("res", sorted(REFERENCE))
def test_parameter_counts_equal_the_sngan_networks(res):
    assert counts(res) == REFERENCE[res]  # 32 px: 4.28M / 1.05M, SNGAN's CIFAR-10 pair


def test_parameter_counts_at_the_other_resolutions():
    assert counts(16) == (3_029_763, 1_053_825)  # 32 px less one up-block; the same critic
    assert counts(256) == (37_135_107, 34_000_129)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("res", [16, 32, 64])
def test_shapes_and_range(res):
    arch = ResNetArch(z_dim=8, width=1 / 16)
    G, D = arch.generator((1, res, res)), arch.critic((1, res, res))
    x = G(torch.randn(3, 8))
    assert x.shape == (3, 1, res, res) and x.abs().max() <= 1
    assert D(x).shape == (3, 1)
    trunk, feats = arch.trunk((1, res, res))
    assert trunk(x).shape == (3, feats)
    enc = arch.encoder((1, res, res), 8)
    assert enc(x).shape == (3, 8) and enc[-1].bias is not None


def test_width_scales_every_channel_and_blocks_follow_sngan():
    arch = ResNetArch(width=0.25)
    G = arch.generator((3, 32, 32))
    ups = [m for m in G.modules() if isinstance(m, UpBlock)]
    assert len(ups) == 3 and all(b.conv1.out_channels == 64 for b in ups)  # 256 * 0.25
    D = arch.critic((3, 64, 64))
    downs = [m for m in D.modules() if isinstance(m, DownBlock)]
    assert [b.conv2.out_channels for b in downs] == [16, 32, 64, 128, 256]
    # SNGAN's blocks: the first conv keeps the input's channels, the second widens
    assert [b.conv1.out_channels for b in downs] == [16, 16, 32, 64, 128]
    assert [b.down for b in downs] == [True] * 5


def test_sn_and_d_norm():
    plain = ResNetArch(width=1 / 16).critic((1, 16, 16))
    sn = ResNetArch(width=1 / 16, sn=True).critic((1, 16, 16))
    layers = [m for m in sn.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    bn = ResNetArch(width=1 / 16, d_norm="bn").critic((1, 16, 16))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8  # 2 per block - 1 + 1
    assert n_params(bn) > n_params(plain)


def test_encoder_models_and_the_pair_critic_build_on_resnet():
    assert_encoder_models_build(ResNetArch(z_dim=8, width=1 / 16))


@pytest.mark.parametrize("objective", [
    ["objective=gan-qp"], ["objective=gan-qp", "objective.critic=pair"], ["objective=wgan-gp"],
    ["objective=hinge-sn"], ["objective=bigan-qp"], ["objective=o-gan"], ["objective=wgan-div"],
], ids=lambda o: "|".join(x.split("=")[1] for x in o))
def test_every_kind_of_objective_trains_with_resnet(cli, tmp_path, objective):
    run = tmp_path / "run"
    r = cli("train", *TINY, "arch=resnet", *objective, "train.iters=2", "train.log_every=1",
            "train.sample_every=0", "train.ckpt_every=0", f"hydra.run.dir={run}")
    assert r.code == 0, r
    for row in read_metrics(run):
        assert all(v is not None and math.isfinite(v) for v in row.values()), row
