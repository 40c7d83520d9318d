"""Sweeps: experiment presets, job directories named by overrides, the submitit launchers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from ganqp_cli.sweeps import submitit_torch_env
from tests.conftest import TINY, read_metrics

TABLE = ["gan-qp", "gan-qp-l2", "wgan-gp", "wgan-sn", "sgan-sn", "lsgan-sn"]


def compose_train(*overrides: str, hydra_cfg: bool = False):
    with initialize_config_module(version_base="1.3", config_module="ganqp_cli.conf"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_cfg)


def tiny(**changes: object) -> list[str]:
    """conftest's TINY run with some keys changed (each key once: Hydra names jobs by all)."""
    keys = {o.split("=", 1)[0]: o for o in TINY}
    keys.update({k: f"{k}={v}" for k, v in changes.items()})
    return list(keys.values())


def job_name(overrides: list[str]) -> str:
    """Hydra's override_dirname: key=value pairs sorted, joined by commas."""
    return ",".join(sorted(overrides))


@pytest.mark.parametrize(("preset", "res", "batch"), [("paper-celebahq128", 128, 64),
                                                      ("paper-celebahq256", 256, 64),
                                                      ("paper-celebahq512", 512, 32)])
def test_paper_presets_fix_the_protocol_and_leave_the_objective_its_own_schedule(
        preset, res, batch):
    for objective in TABLE:
        cfg = compose_train(f"experiment={preset}", f"objective={objective}")
        own = compose_train(f"objective={objective}", "data=celebahq")  # the objective alone
        assert (cfg.res, cfg.train.batch_size, cfg.arch.z_dim, cfg.arch.width) == (
            res, batch, 128, 1.0)
        assert (cfg.arch.name, cfg.data.name, cfg.objective.name) == (
            "gan-qp", "celebahq", objective)
        assert (cfg.train.iters, cfg.train.fid_every, cfg.train.fid_n) == (1_000_000, 1000, 10000)
        assert (cfg.fid.extractor, cfg.fid.ref_n, cfg.train.ema) == ("inception", None, 0.0)
        for key in ("objective.d_steps", "objective.opt_d", "objective.opt_g", "arch.sn",
                    "arch.d_norm"):
            assert OmegaConf.select(cfg, key) == OmegaConf.select(own, key), (objective, key)
    qp = compose_train(f"experiment={preset}", "objective=gan-qp").objective
    assert qp.d_steps == 2 and qp.opt_d.lr == 2e-4 and list(qp.opt_d.betas) == [0.5, 0.999]
    gp = compose_train(f"experiment={preset}", "objective=wgan-gp").objective
    assert gp.d_steps == 5 and gp.opt_d.lr == 1e-4 and list(gp.opt_d.betas) == [0.0, 0.9]


def test_digits_table_preset_is_offline_and_cpu_sized():
    for objective in TABLE:
        cfg = compose_train("experiment=digits-table", f"objective={objective}")
        assert (cfg.data.name, cfg.fid.extractor, cfg.arch.name) == ("digits", "digits", "gan-qp")
        assert cfg.train.fid_every > 0 and cfg.train.iters % cfg.train.fid_every == 0
        own = compose_train(f"objective={objective}", "data=celebahq")  # the objective alone
        for key in ("objective.d_steps", "objective.opt_d", "objective.opt_g", "arch.sn",
                    "arch.d_norm"):
            assert OmegaConf.select(cfg, key) == OmegaConf.select(own, key), (objective, key)
    # a command-line override still wins over the preset
    assert compose_train("experiment=digits-table", "train.iters=7").train.iters == 7


def test_basic_sweep_names_job_dirs_by_overrides_without_paths(cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = tiny(**{"train.ckpt_every": 0})
    r = cli("train", "-m", *args, "seed=0,1", f"fid.weights={tmp_path}/not/used.pt",
            f"hydra.sweep.dir={sweep}")
    assert r.code == 0, r
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == [job_name([*args, f"seed={s}"]) for s in (0, 1)]
    for name in jobs:
        assert json.loads((sweep / name / "status.json").read_text())["status"] == "done"
        assert "fid.weights" in (sweep / name / ".hydra" / "overrides.yaml").read_text()


def test_submitit_local_sweep_runs_each_job_as_a_two_process_group(cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = tiny(**{"train.sample_every": 0, "train.ckpt_every": 0, "train.threads": 1})
    r = cli("train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.timeout_min=5", *args, "objective=gan-qp,sgan-sn",
            f"hydra.sweep.dir={sweep}")
    assert r.code == 0, r
    for objective in ("gan-qp", "sgan-sn"):
        job = sweep / job_name([*args, f"objective={objective}"])
        assert json.loads((job / "status.json").read_text())["status"] == "done", objective
        assert [row["iter"] for row in read_metrics(job)] == [2, 4]
    logs = {p.name: p.read_text() for p in (sweep / ".submitit").rglob("*_log.out")}
    rank0 = [t for n, t in logs.items() if n.endswith("_0_log.out")]
    assert len(rank0) == 2 and len(logs) == 4
    for text in rank0:  # torchrun's variables came from the submitit job (SubmititTorchEnv)
        assert "cpu x2" in text and "parameters and buffers identical on all 2 ranks" in text


@pytest.fixture
def restored_environ():
    """submitit exports straight into os.environ; later in-process runs must not see it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_submitit_torch_env_maps_a_slurm_task_to_torchrun_variables(monkeypatch, restored_environ):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert submitit_torch_env() is None  # not a submitit job
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8",
             "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_PROCID": "6",
             "SLURM_LOCALID": "2", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    env = submitit_torch_env()
    port = env.pop("MASTER_PORT")
    assert env == {"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4",
                   "MASTER_ADDR": "gpu07"}
    assert 20000 <= int(port) <= 60000  # one port per job id, the same on every task
    assert submitit_torch_env() is None  # WORLD_SIZE is set now (or torchrun set it)


def test_slurm_preset_asks_for_gpus_time_and_a_task_per_gpu(monkeypatch, tmp_path):
    submitit = pytest.importorskip("submitit")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit only checks srun exists
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{Path('/usr/bin')}:{Path('/bin')}")
    cfg = compose_train("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=8",
                        "hydra.launcher.nodes=2", "hydra.launcher.partition=gpu",
                        f"hydra.sweep.dir={tmp_path}/sweep", hydra_cfg=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("submitit_launcher.SlurmLauncher")
    assert (params["tasks_per_node"], params["max_num_timeout"]) == (8, 3)
    # what hydra-submitit-launcher hands to submitit (SlurmLauncher.launch)
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    ex = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                               slurm_max_num_timeout=params.pop("max_num_timeout"))
    ex.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    text = ex._executor._make_submission_file_text("python -m ganqp_cli train", "uid")
    for line in ("--gpus-per-node=8", "--ntasks-per-node=8", "--nodes=2", "--partition=gpu",
                 "--time=4320", "--cpus-per-task=8", "--mem=64GB", "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in text, line
