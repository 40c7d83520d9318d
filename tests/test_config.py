"""Config composition for every group option, and validation of user values."""

from __future__ import annotations

import importlib.resources

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from ganqp_cli.config import make
from ganqp_cli.errors import UserError
from ganqp_cli.validation import validate_train as validate
from tests.conftest import TINY

CONF = importlib.resources.files("ganqp_cli.conf")


def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in CONF.joinpath(group).iterdir() if p.name.endswith(".yaml"))


def composed(*overrides: str):
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_contract_options_exist():
    assert {"gan-qp", "dcgan", "mlp"} <= set(options("arch"))
    assert {"digits", "celebahq", "ffhq", "lsun-church", "lsun-bedroom", "folder", "cifar10",
            "mnist", "ring8"} <= set(options("data"))
    assert {"gan-qp", "gan-qp-l2"} <= set(options("objective"))


def test_defaults_are_the_offline_digits_run():
    cfg = composed()
    assert cfg.data.name == "digits" and cfg.objective.name == "gan-qp"
    assert cfg.arch.name == "gan-qp" and cfg.res == 16
    validate(cfg)


@pytest.mark.parametrize("objective", options("objective"))
def test_every_objective_composes_and_builds(objective):
    cfg = composed(f"objective={objective}", "res=16", "arch.width=0.125")
    validate(cfg)
    assert cfg.objective.name == objective
    obj = make(cfg.objective, "objective")
    models = obj.build(make(cfg.arch, "arch"), (1, 16, 16))
    assert models.G(torch.randn(2, models.G.z_dim)).shape == (2, 1, 16, 16)
    opt = make(cfg.objective.opt_d, "objective.opt_d", params=list(models.D.parameters()))
    assert isinstance(opt, torch.optim.Optimizer)


@pytest.mark.parametrize("arch", options("arch"))
def test_every_arch_composes_and_builds(arch):
    shape = (2,) if arch == "mlp" else (3, 32, 32)
    cfg = composed(f"arch={arch}", "res=32")
    a = make(cfg.arch, "arch")
    G, D = a.generator(shape), a.critic(shape)
    x = G(torch.randn(3, a.z_dim))
    assert x.shape == (3, *shape) and D(x).shape == (3, 1)


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option_composes(data):
    cfg = composed(f"data={data}")
    assert cfg.data.name == data
    assert "_target_" in cfg.data
    if data == "folder":
        assert OmegaConf.is_missing(cfg.data, "root")
    elif "root" in cfg.data:
        assert cfg.data.root.endswith(data)  # $GANQP_DATA/<name> by default


def test_data_root_follows_ganqp_data(monkeypatch, tmp_path):
    monkeypatch.setenv("GANQP_DATA", str(tmp_path))
    assert composed("data=celebahq").data.root == f"{tmp_path}/celebahq"


def test_reference_arch_channels_at_128():
    a = make(composed("arch=gan-qp", "data=celebahq").arch, "arch")
    convs = [m for m in a.critic((3, 128, 128)) if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1024]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    G = a.generator((3, 128, 128))
    ups = [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert ups == [512, 256, 128, 64, 3]
    assert isinstance(G.body[1], torch.nn.BatchNorm1d) and G.body[0].out_features == 16 * 1024
    assert a.z_dim == 128


@pytest.mark.parametrize("res", [16, 64, 1024])
def test_dcgan_generalises_by_blocks(res):
    a = make(composed("arch=dcgan", "data=celebahq").arch, "arch")
    G, D = a.generator((3, res, res)), a.critic((3, res, res))
    n_up = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in G.modules())
    assert n_up == int(torch.log2(torch.tensor(res))) - 1  # 5 at 64 px as in the PyTorch example
    if res == 64:
        chans = [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
        assert chans == [512, 256, 128, 64, 3]
        convs = [m.out_channels for m in D if isinstance(m, torch.nn.Conv2d)]
        assert convs == [64, 128, 256, 512, 1]
    if res <= 64:
        assert D(G(torch.randn(2, 100))).shape == (2, 1)


@pytest.mark.parametrize(("override", "key"), [
    ("res=48", "res=48"), ("res=2048", "res=2048"), ("res=8", "res=8"),
    ("train.batch_size=0", "train.batch_size"), ("train.ema=1.5", "train.ema"),
    ("train.amp=fp8", "train.amp"), ("device=tpu", "device"),
    ("objective.d_steps=0", "objective.d_steps"),
])
def test_validation_names_the_key(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        validate(composed(override))


def test_batch_must_divide_over_processes():
    with pytest.raises(UserError, match="train.batch_size"):
        validate(composed("train.batch_size=63"), world=2)


def test_required_value_is_named():
    with pytest.raises(UserError, match=r"data\.root is required"):
        validate(composed("data=folder"))


def test_unknown_constructor_key_is_a_user_error():
    cfg = composed("+objective.lamda=5")
    with pytest.raises(UserError, match="objective"):
        make(cfg.objective, "objective")


def test_integer_betas_from_the_command_line_are_accepted(cli, tmp_path):
    r = cli("train", *TINY, "train.iters=1", "objective.opt_d.betas=[0,0.9]",
            f"hydra.run.dir={tmp_path}")
    assert r.code == 0, r
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert tuple(state["opt_d"]["param_groups"][0]["betas"]) == (0.0, 0.9)


def test_a_bad_optimiser_value_is_a_user_error(cli, tmp_path):
    r = cli("train", *TINY, "train.iters=1", "objective.opt_d.lr=-1", f"hydra.run.dir={tmp_path}")
    assert r.code == 2 and "objective.opt_d" in r.msg and "Traceback" not in r.err


@pytest.mark.parametrize("old,new", [("train.d_steps=3", "objective.d_steps=3"),
                                     ("train.opt_d.lr=1e-3", "objective.opt_d.lr=1e-3"),
                                     ("train.opt_g=null", "objective.opt_g=null")])
def test_moved_keys_name_their_new_place(cli, tmp_path, old, new):
    """An objective's schedule moved from train.* to objective.*: the old key is refused
    with the new one's name (exit 2, no run directory)."""
    r = cli("train", *TINY, old, f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 2 and new in r.msg and "Traceback" not in r.err
    assert not (tmp_path / "run").exists()


def test_objective_recipe_lives_under_objective_and_arch_follows_it():
    """Only experiment/ is global: an objective's YAML writes objective.*, and arch.sn /
    arch.d_norm follow objective.sn / objective.d_norm unless set themselves."""
    cfg = composed("objective=wgan-gp")
    assert (cfg.objective.d_steps, cfg.objective.opt_d.lr) == (5, 1e-4)
    assert (cfg.arch.sn, cfg.arch.d_norm) == (False, "none")
    assert composed("objective=sgan-sn").arch.sn is True
    assert composed("objective=sgan-sn", "arch.sn=false").arch.sn is False
    digits, folder = composed(), composed("data=celebahq")
    assert (digits.res, digits.arch.width, digits.train.iters) == (16, 0.25, 2500)
    assert (digits.train.threads, folder.train.threads) == (1, 0)
    assert (folder.res, folder.arch.width, folder.train.iters) == (128, 1.0, 100000)
    assert composed("res=64").res == 64
