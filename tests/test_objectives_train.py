"""Every objective through the real `ganqp train` path: its YAML's literature defaults,
command-line overrides, a few iterations on digits with each image arch, and a sweep."""

from __future__ import annotations

import importlib.resources
import math

import pytest
import torch
from hydra import compose, initialize_config_module

from ganqp_cli.config import make
from ganqp_cli.objectives import FGAN, GANQP, LSGAN, SGAN, WGAN, WGANGP, Hinge, RpGAN, WGANDiv
from tests.conftest import TINY, read_metrics
from tests.test_ring8 import SETTINGS as RING8
from tests.test_ring8_more import SETTINGS as RING8_MORE

ADAM_SN = ("torch.optim.Adam", 2e-4, [0.5, 0.999])  # SN-GAN's standard CNN, setting C
FGAN_ROW = (FGAN, 1, "torch.optim.Adam", 2e-4, [0.5, 0.999], False, "bn")

# objective -> (class, critic steps, optimiser, lr, betas, arch.sn, arch.d_norm), from the
# papers (../shared/reference/REFERENCE.md). Adding an objective adds one row here.
OBJECTIVES = {
    "gan-qp": (GANQP, 2, "torch.optim.Adam", 2e-4, [0.5, 0.999], False, "bn"),
    "gan-qp-l2": (GANQP, 2, "torch.optim.Adam", 2e-4, [0.5, 0.999], False, "bn"),
    "wgan": (WGAN, 5, "torch.optim.RMSprop", 5e-5, None, False, "bn"),
    "wgan-gp": (WGANGP, 5, "torch.optim.Adam", 1e-4, [0.0, 0.9], False, "none"),
    "wgan-div": (WGANDiv, 5, "torch.optim.Adam", 2e-4, [0.5, 0.999], False, "none"),
    "wgan-sn": (WGAN, 1, *ADAM_SN, True, "none"),
    "sgan-sn": (SGAN, 1, *ADAM_SN, True, "none"),
    "lsgan-sn": (LSGAN, 1, *ADAM_SN, True, "none"),
    "hinge-sn": (Hinge, 1, *ADAM_SN, True, "none"),
    # R3GAN's recipe at the start of its schedules (Huang et al. 2024)
    "rpgan": (RpGAN, 1, "torch.optim.Adam", 2e-4, [0.0, 0.9], False, "none"),
    "fgan-kl": FGAN_ROW,
    "fgan-reverse-kl": FGAN_ROW,
    "fgan-pearson": FGAN_ROW,
    "fgan-hellinger": FGAN_ROW,
    "fgan-js": FGAN_ROW,
    "fgan-gan": FGAN_ROW,
}


# Models with an encoder have their own tests (tests/test_encoders.py).
ENCODER_MODELS = {"bigan-qp", "o-gan"}


def test_every_objective_option_has_its_test_rows():
    folder = importlib.resources.files("ganqp_cli.conf") / "objective"
    options = {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}
    assert options - ENCODER_MODELS == set(OBJECTIVES) == set(RING8) | set(RING8_MORE)


def composed(*overrides: str):
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_yaml_carries_its_literature_defaults(name):
    cls, d_steps, opt, lr, betas, sn, d_norm = OBJECTIVES[name]
    cfg = composed(f"objective={name}", "data=celebahq")  # no data-set run preset
    obj = make(cfg.objective, "objective")
    assert type(obj) is cls and obj.name == name
    t = cfg.objective  # the objective's recipe lives under objective.*
    assert t.d_steps == d_steps
    for node in (t.opt_d, t.opt_g):
        assert node._target_ == opt and node.lr == lr
        assert (list(node.betas) if "betas" in node else None) == betas
    assert cfg.arch.sn is sn and cfg.arch.d_norm == d_norm


def test_objective_specifics_from_the_yamls():
    get = lambda name: make(composed(f"objective={name}").objective, "objective")  # noqa: E731
    assert get("wgan").clip == 0.01 and get("wgan-sn").clip is None
    assert (get("wgan-gp").gp, get("wgan-gp").center) == (10.0, 1.0)
    assert get("sgan-sn").g_form == "nonsaturating"
    assert (get("lsgan-sn").a, get("lsgan-sn").b, get("lsgan-sn").c) == (0.0, 1.0, 1.0)
    assert (get("gan-qp").lam, get("gan-qp").distance) == (10.0, "l1")
    assert get("gan-qp-l2").distance == "l2"
    for d in ("kl", "reverse-kl", "pearson", "hellinger", "js", "gan"):
        obj = get(f"fgan-{d}")
        assert (obj.divergence, obj.g_form) == (d, "trick")


def test_command_line_overrides_reach_the_objective_and_loop():
    cfg = composed("objective=gan-qp", "objective.lam=5", "objective.d_steps=5",
                   "objective.critic=pair")
    obj = make(cfg.objective, "objective")
    assert (obj.lam, obj.critic, cfg.objective.d_steps) == (5, "pair", 5)
    cfg = composed("objective=wgan-gp", "objective.gp=1", "objective.opt_d.lr=3e-4", "arch.sn=true")
    assert make(cfg.objective, "objective").gp == 1
    assert cfg.objective.opt_d.lr == 3e-4 and cfg.arch.sn is True
    assert make(composed("objective=fgan-js", "objective.g_form=minimax").objective,
                "objective").g_form == "minimax"


@pytest.mark.parametrize("override,key", [
    ("objective.g_form=sideways", "objective.g_form"),
    ("objective.divergence=tv", "objective.divergence"),
])
def test_bad_objective_values_are_user_errors(cli, tmp_path, override, key):
    r = cli("train", *TINY, "objective=fgan-kl", override, f"hydra.run.dir={tmp_path}")
    assert r.code == 2 and key in r.msg and "valid" in r.msg, r


# Every objective, plus the binary critic and the non-default generator forms.
SMOKE = [[f"objective={name}"] for name in OBJECTIVES] + [
    ["objective=gan-qp", "objective.critic=pair"],
    ["objective=fgan-kl", "objective.g_form=minimax"],
    ["objective=sgan-sn", "objective.g_form=minimax"],
]


@pytest.mark.parametrize("arch", ["gan-qp", "dcgan"])
@pytest.mark.parametrize("objective", SMOKE, ids=lambda o: "|".join(x.split("=")[1] for x in o))
def test_every_objective_trains_on_digits_with_each_arch(cli, tmp_path, arch, objective):
    run = tmp_path / "run"
    r = cli("train", *TINY, *objective, f"arch={arch}", "train.iters=5", "train.log_every=1",
            "train.sample_every=0", "train.ckpt_every=0", f"hydra.run.dir={run}")
    assert r.code == 0, r
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [1, 2, 3, 4, 5]
    for row in rows:  # non-finite values are written as null
        assert all(v is not None and math.isfinite(v) for v in row.values()), row
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    if objective == ["objective=wgan"]:  # clipped after every critic step, in the real loop
        critic = [v for k, v in state["models"].items()
                  if k.startswith("D.") and "running_" not in k and "num_batches" not in k]
        assert max(v.abs().max().item() for v in critic) <= 0.01


def test_a_two_job_objective_sweep_runs_every_job(cli, tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("train", "-m", *TINY, "objective=wgan-gp,sgan-sn", "train.iters=2",
            f"hydra.sweep.dir={sweep}")
    assert r.code == 0, r
    jobs = {}  # job directories are named by hydra.sweep.subdir; find them by their files
    for path in sweep.glob("*/checkpoints/last.pt"):
        state = torch.load(path, weights_only=True)
        jobs[state["config"]["objective"]["name"]] = (state["iter"], path.parent.parent)
    assert sorted(jobs) == ["sgan-sn", "wgan-gp"]
    for it, run in jobs.values():
        assert it == 2 and [row["iter"] for row in read_metrics(run)] == [2]
