"""`arch=r3gan`: parameter counts of R3GAN's published configurations (built on the meta
device, against the arithmetic of the architecture), the [1, 2, 1] resampling against a NumPy
upfirdn, the Fix-up initialisation, shapes, bad keys, and a few iterations of each kind of
objective on it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.networks import ConditionalArch, R3GANArch, conditioned
from ganqp_cli.networks.r3gan import Block, EmbeddingProjection, Resample
from ganqp_cli.networks.validation import validate_arch
from tests.conftest import TINY, assert_encoder_models_build, read_metrics

_spec = importlib.util.spec_from_file_location(
    "r3gan_params", Path(__file__).resolve().parents[1] / "scripts" / "r3gan_params.py")
r3gan_params = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(r3gan_params)


@pytest.mark.parametrize("preset", list(r3gan_params.PRESETS))
def test_parameter_counts_of_the_published_configurations(preset):
    res, keys, stages = r3gan_params.PRESETS[preset]
    assert [(s.channels, s.groups) for s in R3GANArch(**keys).stages((3, res, res))] == stages
    assert r3gan_params.built(res, keys) == r3gan_params.arithmetic(stages)


@pytest.mark.parametrize("preset", list(r3gan_params.CLASSES))
def test_parameter_counts_of_the_published_conditional_configurations(preset):
    res, keys, stages = r3gan_params.PRESETS[preset]
    n = r3gan_params.CLASSES[preset]
    assert r3gan_params.built(res, keys, n_classes=n) == r3gan_params.arithmetic(stages,
                                                                                n_classes=n)


def test_cifar10_counts_written_out():
    # 4 stages of 768 channels, 2 blocks each: 8 x 2,583,552 in the blocks
    assert r3gan_params.built(32, {}) == (20_732_160, 20_683_776)


def _digest(m: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in m.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_unconditional_networks_are_unchanged_by_the_conditional_ones():
    """The numbers main's arch=r3gan gave before cond=true reached it (a running sweep
    compares against them): parameter names, init order and values bitwise, the outputs."""
    shape = (3, 16, 16)
    torch.manual_seed(0)
    arch = R3GANArch(z_dim=8, widths=[16, 8, 8], blocks=1)
    G, D = arch.generator(shape), arch.critic(shape)
    assert sum(p.numel() for p in G.parameters()) == 11416
    assert sum(p.numel() for p in D.parameters()) == 11304
    assert (_digest(G), _digest(D)) == ("696555952b8c98d9", "82febffd3c5c3afe")
    x = G(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)))
    assert x.double().sum().item() == pytest.approx(-172.99008406593202, rel=1e-6)
    assert x.double().abs().sum().item() == pytest.approx(1274.2947636680983, rel=1e-6)
    np.testing.assert_allclose(D(x).flatten().tolist(), [-0.343178391456604, 0.055507052689790726,
                               -0.43663498759269714, 0.05211339145898819], rtol=1e-5)
    torch.manual_seed(0)
    D = R3GANArch(z_dim=8, widths=[16, 8, 8], blocks=1, sn=True).critic(shape)
    assert _digest(D) == "792942c6c1c8876d"
    np.testing.assert_allclose(D(x).flatten().tolist(), [0.01837766543030739,
                               -0.004770937375724316, 0.008972566574811935,
                               0.023147597908973694], rtol=1e-5)


def upfirdn(x: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """NumPy upfirdn2d of one channel with the separable [1, 3, 3, 1] / 8 filter (gain up^2):
    insert zeros, pad, correlate, keep every down-th sample."""
    tap = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0
    h, w = x.shape
    z = np.zeros((h * up, w * up))
    z[::up, ::up] = x * up * up
    z = np.pad(z, [pad, pad])
    k = np.outer(tap, tap)
    out = np.array([[(z[i:i + 4, j:j + 4] * k).sum() for j in range(z.shape[1] - 3)]
                    for i in range(z.shape[0] - 3)])
    return out[::down, ::down]


def test_resampling_matches_upfirdn_with_the_1_2_1_filter():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    up, down = Resample(up=True).double()(x), Resample(up=False).double()(x)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    for n in range(2):
        for c in range(3):
            a = x[n, c].numpy()
            # StyleGAN's upsample2d / downsample2d paddings for a 4-tap filter and factor 2
            np.testing.assert_allclose(up[n, c].numpy(), upfirdn(a, 2, 1, (2, 1)), atol=1e-12)
            np.testing.assert_allclose(down[n, c].numpy(), upfirdn(a, 1, 2, (1, 1)),
                                       atol=1e-12)


def test_fixup_initialisation():
    torch.manual_seed(0)
    arch = R3GANArch(width=1 / 16, blocks=[1, 2, 3])  # 16 px: 3 stages, 6 blocks
    G = arch.generator((3, 16, 16))
    blocks = [m for m in G.modules() if isinstance(m, Block)]
    assert len(blocks) == 6
    x = torch.randn(4, blocks[0].expand.in_channels, 5, 5)
    for b in blocks:
        assert b.project.weight.abs().max() == 0  # each block starts as the identity
        assert torch.equal(b(x[:, :b.expand.in_channels]), x[:, :b.expand.in_channels])
    # He-normal scaled by L^(-1/4), L = 6 blocks: the expanding conv's weight std
    w = torch.cat([b.expand.weight.flatten() for b in blocks[2:]])
    expected = math.sqrt(2 / 1.04) * 6 ** -0.25 / math.sqrt(blocks[2].expand.in_channels)
    assert w.std().item() == pytest.approx(expected, rel=0.1)
    # under spectral norm the last convs start small but not zero (a zero weight has no norm)
    sn = R3GANArch(width=1 / 16, sn=True).critic((3, 16, 16))
    assert all(b.project.weight.abs().max() > 0 for b in sn.modules() if isinstance(b, Block))
    assert torch.isfinite(sn(torch.randn(2, 3, 16, 16))).all()


@pytest.mark.parametrize("res", [16, 32])
def test_shapes_trunk_and_encoder(res):
    arch = R3GANArch(z_dim=8, width=1 / 24)
    G, D = arch.generator((1, res, res)), arch.critic((1, res, res))
    x = G(torch.randn(3, 8))
    assert x.shape == (3, 1, res, res) and D(x).shape == (3, 1)
    trunk, feats = arch.trunk((1, res, res))
    assert trunk(x).shape == (3, feats) and feats == 32
    enc = arch.encoder((1, res, res), 8)
    assert enc(x).shape == (3, 8) and enc[-1].bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d | nn.GroupNorm) for m in D.modules())


def test_channels_widths_and_cardinality_keys():
    arch = R3GANArch(channels=64, widths=None, blocks=1, cardinality=4)
    assert [(s.side, s.channels, s.groups) for s in arch.stages((3, 128, 128))] == [
        (4, 64, 4), (8, 64, 4), (16, 64, 4), (32, 64, 4), (64, 32, 4), (128, 16, 4)]
    arch = R3GANArch(widths=[40, 20, 10], width=0.5, expansion=3)
    assert [(s.channels, s.groups) for s in arch.stages((3, 16, 16))] == [(20, 3), (10, 1),
                                                                         (5, 1)]


@pytest.mark.parametrize("keys,match", [
    ({"cardinality": 7}, r"arch\.cardinality=7 is not valid: .*4 px stage has 48 channels, "
                         r"96 after the x2 expansion, which 7 groups"),
    ({"widths": [48, 48]}, r"arch\.widths=\[48, 48\] is not valid: one number per stage from "
                           r"4 px up: 3 at this resolution"),
    ({"blocks": [2, 0, 1]}, r"arch\.blocks=\[2, 0, 1\] is not valid"),
])
def test_bad_keys_are_named(keys, match):
    node = {"_target_": "ganqp_cli.networks.R3GANArch", "name": "r3gan", "channels": 48,
            "sync_bn": False, **keys}
    with pytest.raises(UserError, match=match):
        validate_arch(node, 16)


def test_cardinality_that_does_not_divide_is_refused_by_ganqp_train(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "arch=r3gan", "arch.cardinality=5", f"hydra.run.dir={run}")
    assert r.code == 2 and "arch.cardinality=5" in r.msg and "Traceback" not in r.err, r
    assert not (run / "metrics.jsonl").exists()


def test_encoder_models_and_the_pair_critic_build_on_r3gan():
    assert_encoder_models_build(R3GANArch(z_dim=8, width=1 / 24))


@pytest.mark.slow
@pytest.mark.parametrize("objective", [
    ["objective=rpgan"], ["objective=hinge-sn"], ["objective=o-gan"],
], ids=lambda o: "|".join(x.split("=")[1] for x in o))
def test_every_kind_of_objective_trains_with_r3gan(cli, tmp_path, objective):
    run = tmp_path / "run"
    r = cli("train", *TINY, "arch=r3gan", "arch.channels=32", "arch.blocks=1", *objective,
            "train.iters=2", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0",
            f"hydra.run.dir={run}")
    assert r.code == 0, r
    rows = read_metrics(run)
    for row in rows:
        assert all(v is not None and math.isfinite(v) for v in row.values()), row
    if objective == ["objective=rpgan"]:  # its recipe: R1 and R2 on
        assert rows[-1]["reg_r1"] > 0 and rows[-1]["reg_r2"] > 0


def test_conditional_networks_take_the_class_as_r3gans_code():
    """cond=true: G reads [z; embed(y)] and D(x, y) = <W phi(x), embed'(y)>, no unconditional
    term; the class changes both, and gradients reach exactly the classes of the batch."""
    torch.manual_seed(0)
    shape = (1, 16, 16)
    arch = ConditionalArch(R3GANArch(z_dim=8, widths=[16, 8, 8], blocks=1), 10)
    G, D = arch.generator(shape), arch.critic(shape)
    assert isinstance(D, EmbeddingProjection) and D.head.bias is None and D.codes is None
    z, y = torch.randn(6, 8).repeat(2, 1), torch.tensor([0] * 6 + [7] * 6)
    with conditioned(G, y), conditioned(D, y):
        x = G(z)
        s = D(x)
    assert x.shape == (12, 1, 16, 16) and s.shape == (12, 1)
    assert (x[:6] - x[6:]).abs().amax() > 1e-2  # same z, other class
    torch.testing.assert_close(x, G.net(torch.cat([z, G.embed.weight[y]], 1)))
    phi = D.trunk(x)
    torch.testing.assert_close(s, ((phi @ D.head.weight.T) * D.embed.weight[y]).sum(1, True))
    with torch.no_grad(), conditioned(D, y.flip(0)):
        assert (D(x) - s).abs().amax() > 1e-3  # same image, other class
    (s.sum() + x.square().mean()).backward()
    for embed in (G.embed, D.embed):
        used = embed.weight.grad.abs().sum(1) > 0
        assert used.tolist() == [k in (0, 7) for k in range(10)]
    with pytest.raises(RuntimeError, match="class-conditional"):
        D(x)


def test_conditional_initialisation_encoder_and_spectral_norm():
    """Their scales: G's embedding N(0, 1/classes) (He-normal of the one-hot's linear layer),
    D's N(0, 1/(C classes)), C the 4 px stage's channels; the encoders' codes get the
    projection added to each; under spectral norm the embedding is normalised too."""
    torch.manual_seed(0)
    shape, n = (3, 16, 16), 1000
    arch = ConditionalArch(R3GANArch(z_dim=64, widths=[16, 8, 8], blocks=1), n)
    G, D = arch.generator(shape), arch.critic(shape)
    assert G.embed.weight.shape == (n, 64) and D.embed.weight.shape == (n, 16)
    assert G.embed.weight.std().item() == pytest.approx(n ** -0.5, rel=0.03)
    assert D.embed.weight.std().item() == pytest.approx((16 * n) ** -0.5, rel=0.03)
    x, y = torch.randn(5, *shape), torch.tensor([3, 999, 0, 3, 500])
    enc = arch.encoder(shape, 4)
    with torch.no_grad(), conditioned(enc, y):
        e = enc(x)
        h = enc.trunk(x)
    assert e.shape == (5, 4) and enc.codes.bias.shape == (4,)
    proj = ((h @ enc.head.weight.T) * enc.embed.weight[y]).sum(1, keepdim=True)
    torch.testing.assert_close(e, h @ enc.codes.weight.T + enc.codes.bias + proj)
    with torch.no_grad(), conditioned(enc, y.flip(0)):
        assert (enc(x) - e).abs().amax() > 1e-4  # the codes answer to the class
    sn = ConditionalArch(R3GANArch(z_dim=8, widths=[16, 8, 8], blocks=1, sn=True), n)
    D = sn.critic(shape)
    assert nn.utils.parametrize.is_parametrized(D.embed, "weight")
    assert nn.utils.parametrize.is_parametrized(D.head, "weight")
    with torch.no_grad(), conditioned(D, y):
        assert torch.isfinite(D(x)).all()


@pytest.mark.slow
def test_cond_r3gan_trains_on_stacked_digits_and_samples_a_class(cli, tmp_path):
    """2 iterations of cond=true RpGAN on the 1,000 classes; `ganqp sample class=735`, and
    `acc` and `modes` of the checkpoint equal to those of its 50 samples written as a folder
    (whose dataset.json names all 1,000 classes though few are drawn)."""
    run = tmp_path / "run"
    r = cli("train", *TINY, "data=stacked-digits", "cond=true", "arch=r3gan",
            "arch.widths=[16,8,8]", "arch.blocks=1", "objective=rpgan", "train.iters=2",
            "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0",
            f"hydra.run.dir={run}")
    assert r.code == 0, r
    for row in read_metrics(run):
        assert all(v is not None and math.isfinite(v) for v in row.values()), row
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["classes"]) == 1000
    ckpt = run / "checkpoints" / "last.pt"
    r = cli("sample", f"ckpt={ckpt}", "class=735", "n=4", f"out={tmp_path / 'seven.png'}")
    assert r.code == 0 and (tmp_path / "seven.png").is_file(), r
    r = cli("sample", f"ckpt={ckpt}", "format=folder", "n=50", "seed=0", f"out={tmp_path / 's'}")
    assert r.code == 0, r
    got = []
    for what in (f"ckpt={ckpt}", f"samples={tmp_path / 's'}"):
        out = tmp_path / "fid.json"
        r = cli("fid", what, "n=50", "fid.metrics=[acc,modes]", f"out={out}")
        assert r.code == 0, r
        got.append(json.loads(out.read_text()))
    keys = ("acc", "acc_n", "modes", "modes_kl", "modes_n")
    assert [got[0][k] for k in keys] == [got[1][k] for k in keys] and got[0]["acc_n"] == 50
