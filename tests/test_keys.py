"""Every key of every objective, arch, aug and reg node is checked before any work
(validate_objective / validate_arch / validate_aug / validate_reg): each constructor argument
has a declared check, every shipped option passes, and bad values end `ganqp train` with
exit 2 and a message naming the key."""

from __future__ import annotations

import importlib.resources

import pytest
import yaml
from hydra import compose, initialize_config_module

from ganqp_cli.augment import validate_aug
from ganqp_cli.errors import UserError
from ganqp_cli.keyspec import constructor_keys, declared_keys, target_class
from ganqp_cli.networks import validate_arch
from ganqp_cli.objectives import validate_objective
from ganqp_cli.regularizers import Regularizers, validate_reg
from tests.conftest import TINY

GROUPS = ("objective", "arch", "aug")


def options(group: str) -> list[str]:
    folder = importlib.resources.files("ganqp_cli.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def composed(*overrides: str):
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("group", GROUPS)
def test_every_constructor_argument_has_a_check(group):
    folder = importlib.resources.files("ganqp_cli.conf") / group
    for name in options(group):
        node = yaml.safe_load((folder / f"{name}.yaml").read_text())
        cls = target_class(node, group)
        missing = set(constructor_keys(cls)) - set(declared_keys(cls))
        assert not missing, (name, missing)
    assert set(constructor_keys(Regularizers)) == set(declared_keys(Regularizers))


def test_every_shipped_option_passes():
    for name in options("objective"):
        validate_objective(composed(f"objective={name}").objective)
    for name in options("arch"):
        validate_arch(composed(f"arch={name}", "objective.d_norm=none").arch)
    for name in options("aug"):
        validate_aug(composed(f"aug={name}").aug)
    validate_reg(composed().reg)


def test_direct_calls_name_the_key():
    cfg = composed("objective=bigan-qp", "objective.beta1=-1")
    with pytest.raises(UserError, match=r"objective\.beta1=-1 is not valid: a number >= 0"):
        validate_objective(cfg.objective)
    with pytest.raises(UserError, match=r"res=1024 is not valid: arch=resnet"):
        validate_arch(composed("arch=resnet").arch, 1024)


BAD = [  # override, key named in the message
    ("objective.lam=0", "objective.lam"),           # issue 14: accepted before
    ("objective.lam=-3", "objective.lam"),
    ("arch.width=0", "arch.width"),
    ("arch.width=-0.5", "arch.width"),
    ("arch.z_dim=0", "arch.z_dim"),
    ("arch.z_dim=1.5", "arch.z_dim"),
    ("objective.distance=l3", "objective.distance"),
    ("objective.pair_hidden=0", "objective.pair_hidden"),
    ("objective.sn=maybe", "objective.sn"),
    ("objective.d_norm=ln", "objective.d_norm"),
    ("+objective.lambda=1", "objective.lambda"),
    ("arch=dcgan arch.ngf=0", "arch.ngf"),
    ("arch=resnet arch.ch=0", "arch.ch"),
    ("objective=wgan-gp objective.gp=-1", "objective.gp"),
    ("objective=wgan-div objective.k=0", "objective.k"),
    ("objective=wgan-div objective.p=0.5", "objective.p"),
    ("objective=wgan objective.clip=0", "objective.clip"),
    ("objective=o-gan objective.qp_weight=0", "objective.qp_weight"),
    ("objective=lsgan-sn objective.a=x", "objective.a"),
    ("aug=diffaugment aug.policy=[colour]", "aug.policy"),
    ("aug=diffaugment aug.cutout=0", "aug.cutout"),
    ("aug=ada aug.target=1", "aug.target"),
    ("aug=ada aug.interval=0", "aug.interval"),
    ("aug=ada aug.kimg=0", "aug.kimg"),
    ("reg.r1=-1", "reg.r1"),
    ("reg.every=0", "reg.every"),
    ("reg.lecam_decay=1", "reg.lecam_decay"),
    ("+reg.r3=1", "reg.r3"),
]


@pytest.mark.parametrize("override,key", BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_refused_before_any_work(cli, tmp_path, override, key):
    run = tmp_path / "run"
    r = cli("train", *TINY, *override.split(), f"hydra.run.dir={run}")
    assert r.code == 2 and key in r.msg, r
    assert "Traceback" not in r.err
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
