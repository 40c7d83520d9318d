"""Hydra callbacks for sweeps: submitit jobs run as torchrun-style data-parallel groups.

hydra-submitit-launcher starts every task of a SLURM job (`tasks_per_node` per node, one
per GPU in conf/hydra/launcher/slurm.yaml) as the same Hydra job, but sets only SLURM's
variables. `SubmititTorchEnv` exports what torchrun would set (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), derived by submitit from the job,
before the task runs, so `ganqp_cli.distributed` takes the same path as under torchrun.
Outside submitit, or with one task, or under torchrun itself, it does nothing.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def submitit_torch_env() -> dict[str, str] | None:
    """The torchrun variables for this submitit task, or None when there is nothing to set."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or "WORLD_SIZE" in os.environ:
        return None
    import submitit
    if submitit.JobEnvironment().num_tasks <= 1:
        return None
    before = dict(os.environ)
    # devices stay visible: ganqp picks cuda:LOCAL_RANK itself (ganqp_cli.distributed)
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


class SubmititTorchEnv(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        submitit_torch_env()
