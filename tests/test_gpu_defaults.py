"""The GPU defaults, on the paths the CPU reaches: train.amp=auto, train.channels_last,
fused optimisers on CUDA, train.compile (Dynamo and AOTAutograd with the "aot_eager"
backend, which generates no code; the inductor backend, minutes of gcc here, in one long
test)."""

from __future__ import annotations

import copy
import importlib.resources

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from ganqp_cli.config import make_optimizer
from ganqp_cli.data import Batches
from ganqp_cli.distributed import Dist
from ganqp_cli.training import compiling
from ganqp_cli.training.setup import Setup, resolve_amp
from tests.conftest import read_metrics

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BASE = ["res=16", "arch.width=0.125", "train.batch_size=8", "train.log_every=1",
        "train.sample_every=0", "train.ckpt_every=0", "train.sample_n=4", "train.workers=0",
        "train.keep_ckpts=0"]
FAST = [*BASE, "train.iters=3"]


def compose_train(*overrides: str):
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_defaults_are_auto_and_resolve_per_device():
    t = compose_train().train
    assert (t.amp, t.compile, t.channels_last) == ("auto", "auto", "auto")
    assert resolve_amp("auto", CPU) == "off" and resolve_amp("fp16", CUDA) == "fp16"
    assert not compiling.wanted("auto", CPU) and compiling.wanted("auto", CUDA)
    assert compiling.wanted(True, CPU) and not compiling.wanted(False, CUDA)
    # train.compile=auto compiles nowhere until the GPU check's compile rows pass
    assert not compiling.compile_wanted("auto") and not compiling.compile_wanted(False)
    assert compiling.compile_wanted(True) and compiling.compile_wanted("true")
    assert compiling.memory_format("auto", CUDA, (3, 64, 64)) is torch.channels_last
    assert compiling.memory_format("auto", CUDA, (2,)) is None  # point data
    assert compiling.memory_format("auto", CPU, (3, 64, 64)) is None
    assert compiling.memory_format(True, CPU, (1, 16, 16)) is torch.channels_last


@pytest.mark.parametrize("key", ["compile", "channels_last"])
def test_a_bad_setting_names_its_key(cli, tmp_path, key):
    r = cli("train", *FAST, f"train.{key}=sometimes", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 2 and f"train.{key}" in r.msg and "auto, true, false" in r.msg, r
    assert not (tmp_path / "run").exists()


def test_fused_on_cuda_only_and_the_optimiser_stays_swappable():
    p = [nn.Parameter(torch.randn(3, 4))]
    adam = OmegaConf.create({"_target_": "torch.optim.Adam", "lr": 1e-3, "betas": [0, 0.9]})
    assert make_optimizer(adam, "k", p, CUDA).defaults["fused"] is True
    assert not make_optimizer(adam, "k", p, CPU).defaults["fused"]
    own = OmegaConf.merge(adam, {"fused": False})  # the node's own choice stays
    assert make_optimizer(own, "k", p, CUDA).defaults["fused"] is False
    each = OmegaConf.merge(adam, {"foreach": True})  # fused and foreach exclude each other
    assert not make_optimizer(each, "k", p, CUDA).defaults["fused"]
    rms = OmegaConf.create({"_target_": "torch.optim.RMSprop", "lr": 1e-3})  # takes no fused
    opt = make_optimizer(rms, "k", p, CUDA)
    assert type(opt) is torch.optim.RMSprop and "fused" not in opt.defaults
    # The fused kernel's update (it runs on the CPU too) is Adam's.
    torch.manual_seed(0)
    grads = [torch.randn(3, 4) for _ in range(3)]
    out = []
    for device in (CUDA, CPU):
        q = [nn.Parameter(torch.ones(3, 4))]
        opt = make_optimizer(adam, "k", q, device)
        for g in grads:
            q[0].grad = g.clone()
            opt.step()
        out.append(q[0].detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-6, atol=1e-7)


def rgb_folder(root, n: int = 8):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


@pytest.mark.slow
def test_channels_last_networks_and_batches_train_as_the_default_layout(cli, tmp_path):
    data = ["data=folder", f"data.root={rgb_folder(tmp_path / 'img')}", "data.hflip=true"]
    cfg = compose_train(*FAST, *data, "train.channels_last=true")
    s = Setup(cfg, Dist(), CPU)
    convs = [m.weight for m in s.models.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and
                         not w.is_contiguous() for w in convs if w.shape[1] > 1)
    batch = next(Batches(s.data, 4, 0, CPU, workers=0, memory_format=s.memory_format))
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    runs = {}
    for layout in ("false", "true"):
        runs[layout] = tmp_path / layout
        r = cli("train", *FAST, *data, f"train.channels_last={layout}",
                f"hydra.run.dir={runs[layout]}")
        assert r.code == 0, r
    a, b = (read_metrics(runs[k]) for k in ("false", "true"))
    for ra, rb in zip(a, b, strict=True):  # other kernels, the same arithmetic
        for k in ("d_loss", "g_loss"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-4, abs=1e-6), (k, ra, rb)
    state = torch.load(runs["true"] / "checkpoints" / "last.pt", weights_only=True)
    plain = Setup(compose_train(*FAST, *data), Dist(), CPU)
    plain.models.load_state_dict(state["models"])  # loads into the default layout
    r = cli("sample", f"ckpt={runs['true'] / 'checkpoints' / 'last.pt'}", "n=4",
            f"out={tmp_path / 'grid.png'}")
    assert r.code == 0 and (tmp_path / "grid.png").is_file(), r


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    yield
    torch._dynamo.reset()


def frames_compiled() -> int:
    from torch._dynamo.utils import counters
    return int(counters["frames"]["ok"])


@pytest.mark.slow
def test_compiled_run_keeps_checkpoints_plain_and_resumes_bitwise(cli, tmp_path, aot_eager):
    runs = {k: tmp_path / k for k in ("plain", "compiled", "resumed")}
    r = cli("train", *FAST, f"hydra.run.dir={runs['plain']}")
    assert r.code == 0, r
    before = frames_compiled()
    r = cli("train", *FAST, "train.compile=true", f"hydra.run.dir={runs['compiled']}")
    assert r.code == 0 and "the generator and the critic are compiled" in r.out, r
    assert frames_compiled() > before  # Dynamo traced the networks
    for it in (2, 3):  # 2 iterations, then the same command resumes to 3
        r = cli("train", *BASE, f"train.iters={it}", "train.compile=true",
                f"hydra.run.dir={runs['resumed']}")
        assert r.code == 0, r
    plain, compiled, resumed = (torch.load(runs[k] / "checkpoints" / "last.pt",
                                           weights_only=True) for k in runs)
    for part in ("models", "ema", "opt_d", "opt_g"):
        assert list(flat(compiled[part])) == list(flat(plain[part])), part  # no _orig_mod.
        for k, v in flat(compiled[part]).items():
            assert torch.equal(v, flat(resumed[part])[k]), (part, k)  # resume: bitwise
            torch.testing.assert_close(v, flat(plain[part])[k], rtol=1e-4, atol=1e-6)
    r = cli("sample", f"ckpt={runs['compiled'] / 'checkpoints' / 'last.pt'}", "n=4",
            f"out={tmp_path / 'grid.png'}")
    assert r.code == 0, r


def flat(d, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
    return out


def test_a_compiled_network_first_called_frozen_trains_when_unfrozen(aot_eager):
    """The loop freezes G during the critic phase, so G's compiled forward first runs with
    frozen parameters. torch 2.11 reused that graph once they trained again (outputs
    without a grad_fn; the H200's "element 0 of tensors does not require grad"), unless
    Dynamo checks the parameters' requires_grad (compiling.guard_trainability)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(144, 1))
    plain = copy.deepcopy(net)
    compiling.compile_forward(net)
    assert not torch._dynamo.config.skip_tensor_guards_with_matching_dict_tags
    x = torch.randn(2, 1, 8, 8)
    for on in (False, True, False, True):
        for m in (net, plain):
            for p in m.parameters():
                p.requires_grad_(on)
        out, ref = net(x), plain(x)
        assert out.requires_grad is on and torch.allclose(out, ref, atol=1e-6)
    out.sum().backward()
    ref.sum().backward()
    for p, q in zip(net.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["objective=wgan-gp"], ["reg.r1=1"]])
def test_a_critic_differentiated_twice_stays_uncompiled(cli, tmp_path, aot_eager, args):
    """A compiled critic under a gradient penalty ends in torch's "does not currently
    support double backward"; the run leaves it uncompiled, says why, and trains."""
    r = cli("train", *BASE, *args, "train.iters=2", "train.compile=true",
            f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 0, r
    line = next(x for x in r.out.splitlines() if x.startswith("train.compile"))
    assert "the critic runs uncompiled" in line and "double backward" in line, line
    assert len(read_metrics(tmp_path / "run")) == 2


@pytest.mark.long
def test_inductor_compiles_the_default_networks_on_the_cpu(cli, tmp_path):
    """The real backend: C++ kernels built with gcc (minutes on a cold cache)."""
    r = cli("train", *BASE, "train.iters=2", "train.compile=true",
            f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 0 and "the generator and the critic are compiled" in r.out, r
    torch._dynamo.reset()
    r = cli("sample", f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.pt'}", "n=4",
            f"out={tmp_path / 'grid.png'}")
    assert r.code == 0, r


OBJECTIVES = sorted(p.name[:-5] for p in
                    (importlib.resources.files("ganqp_cli.conf") / "objective").iterdir()
                    if p.name.endswith(".yaml"))


@pytest.mark.long
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_trains_compiled(cli, tmp_path, aot_eager, name):
    """train.compile=true through Dynamo and AOTAutograd for every objective: what a GPU
    run does by default (train.compile=auto), less inductor's code generation."""
    extra = ["objective.hidden=32"] if name == "bigan-qp" else []
    r = cli("train", *BASE, "train.iters=2", "train.compile=true", f"objective={name}",
            *extra, f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 0, r
    assert any(x.startswith("train.compile:") for x in r.out.splitlines()), r.out
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2 and all(v is not None for row in rows for v in row.values()), rows
