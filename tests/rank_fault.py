"""`ganqp` with one rank made to differ, for tests/test_parallel.py (run under torchrun):

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/rank_fault.py \
        TENSOR train [overrides]

On rank 1, every buffer average (distributed.average_buffers, which runs before each
checkpoint) is followed by a nudge of the model tensor named TENSOR (a state-dict name such
as G.body.1.running_mean): what a rank that missed a collective or drew other data would
hold. The rank check before the checkpoint must stop the run, naming that tensor.
"""

from __future__ import annotations

import os
import sys

import torch

from ganqp_cli import distributed
from ganqp_cli.cli import main
from ganqp_cli.worker_exit import run_as_worker


def nudge_after_average(name: str) -> None:
    average = distributed.average_buffers

    def average_then_nudge(modules) -> None:
        modules = list(modules)
        average(modules)
        models = modules[0]
        with torch.no_grad():
            dict(models.state_dict(keep_vars=True))[name].add_(1e-3)

    distributed.average_buffers = average_then_nudge


if __name__ == "__main__":
    tensor, argv = sys.argv[1], sys.argv[2:]
    if os.environ.get("RANK") == "1":
        nudge_after_average(tensor)
    run_as_worker(main, argv)
