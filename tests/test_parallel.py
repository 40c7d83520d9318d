"""One run on 1 or N processes: the same losses with arch.sync_bn (2 gloo processes against
one, and resumed across process counts), a rank that differs stops the run naming the
tensor, the backend and device follow `device=` (refusals with CUDA mocked in-process), the
process-group timeout, and CUDA RNG states on a node that sees fewer GPUs."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ganqp_cli import checkpoint as ckpt
from ganqp_cli import distributed
from ganqp_cli.errors import UserError
from ganqp_cli.objectives import WGANGP
from tests.conftest import ROOT, read_metrics, torchrun

RUN = ["res=16", "arch.width=0.125", "train.batch_size=16", "train.log_every=1",
       "train.sample_every=0", "train.ckpt_every=0", "train.sample_n=4", "train.workers=0",
       "arch.sync_bn=true"]


def losses(run: Path) -> dict[int, tuple[float, float]]:
    return {r["iter"]: (r["d_loss"], r["g_loss"]) for r in read_metrics(run)}


def assert_close_losses(a: dict, b: dict, iters: list[int]) -> None:
    assert sorted(a) == sorted(b) == iters, (a, b)
    for it in iters:
        for x, y in zip(a[it], b[it], strict=True):
            assert abs(x - y) <= 1e-3 * abs(x), (it, a[it], b[it])


# ---- world-size invariance (torchrun, gloo) -----------------------------------------------

def _penalty_worker(rank: int, world: int, init: str, expect: dict) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        D, real, fake = _penalty_inputs()
        n = real.shape[0] // world
        rows = slice(rank * n, (rank + 1) * n)
        torch.manual_seed(5)  # every rank alike, as the loop seeds them
        pen, norm = WGANGP().penalty(D, real[rows], fake[rows])
        pen.backward()
        out = torch.cat([pen.detach().reshape(1), norm.reshape(1),
                         *[p.grad.flatten() for p in D.parameters() if p.grad is not None]])
        torch.distributed.all_reduce(out)  # the loop's mean over ranks (equal shards)
        torch.testing.assert_close(out / world, expect["out"], rtol=1e-5, atol=1e-6)
        assert torch.equal(torch.get_rng_state(), expect["rng"])  # streams still aligned
    finally:
        torch.distributed.destroy_process_group()


def _penalty_inputs():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(),
                            torch.nn.Linear(8, 1))
    return D, torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)


def test_wgan_gp_penalty_on_two_processes_equals_one_process(tmp_path):
    """The interpolation eps is drawn for the global batch (distributed.global_rand): two
    ranks with half the batch each give the one-process penalty, statistics, gradients and
    random state."""
    import torch.multiprocessing as mp
    D, real, fake = _penalty_inputs()
    torch.manual_seed(5)
    pen, norm = WGANGP().penalty(D, real, fake)
    pen.backward()
    expect = {"out": torch.cat([pen.detach().reshape(1), norm.reshape(1),
                                *[p.grad.flatten() for p in D.parameters()
                                  if p.grad is not None]]),
              "rng": torch.get_rng_state()}
    mp.spawn(_penalty_worker, args=(2, f"file://{tmp_path / 'store'}", expect), nprocs=2)


def test_one_run_on_1_or_2_processes_resumed_on_either_logs_the_same_losses(cli, tmp_path):
    """GAN-QP on the digits with BatchNorm in G (1d and 2d) and in the critic, and R1 through
    the critic's global BatchNorm (differentiated twice): 1 process for 5 iterations is the
    reference; 2 processes stopped at 3 and resumed on 2 or on 1, and 1 process resumed on 2,
    log its losses and consume its batches."""
    args = [*RUN, "train.ckpt_every=3", "reg.r1=1"]
    ref, two_then_one, one_then_two = (tmp_path / n for n in ("ref", "two_then_one",
                                                             "one_then_two"))
    assert cli("train", *args, "train.iters=5", f"hydra.run.dir={ref}").code == 0
    # no run directory named: rank 0 chooses it, rank 1 uses it
    r = torchrun("train", *args, "train.iters=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    two = runs[0]
    assert (two / ".hydra" / "config.yaml").is_file()
    assert "cpu x2" in r.stdout and "parameters and buffers identical on all 2 ranks" in r.stdout
    assert len(torch.load(two / "checkpoints" / "last.pt", weights_only=True)["rng"]) == 2
    shutil.copytree(two, two_then_one)
    # 2 -> 2
    r = torchrun("train", *args, "train.iters=5", f"hydra.run.dir={two}", cwd=tmp_path)
    assert r.returncode == 0 and "resumed at iter 3" in r.stdout, r.stderr[-3000:]
    assert "parameters and buffers identical on all 2 ranks" in r.stdout
    # 2 -> 1
    r1 = cli("train", *args, "train.iters=5", f"hydra.run.dir={two_then_one}")
    assert r1.code == 0 and "resumed at iter 3" in r1.out and "cpu x1" in r1.out, r1
    # 1 -> 2
    assert cli("train", *args, "train.iters=3", f"hydra.run.dir={one_then_two}").code == 0
    r = torchrun("train", *args, "train.iters=5", f"hydra.run.dir={one_then_two}", cwd=tmp_path)
    assert r.returncode == 0 and "resumed at iter 3" in r.stdout, r.stderr[-3000:]
    assert "cpu x2" in r.stdout and "parameters and buffers identical on all 2 ranks" in r.stdout
    want = torch.load(ref / "checkpoints" / "last.pt", weights_only=True)
    for run, ranks in ((two, 2), (two_then_one, 1), (one_then_two, 2)):
        assert_close_losses(losses(ref), losses(run), [1, 2, 3, 4, 5])
        assert [row["iter"] for row in read_metrics(run)] == [1, 2, 3, 4, 5]  # none doubled
        assert all(v is not None for row in read_metrics(run) for v in row.values())
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        assert state["iter"] == 5 and len(state["rng"]) == ranks
        # the same global batches consumed, whatever the number of processes
        assert state["data"]["consumed"] == want["data"]["consumed"]


def test_a_rank_that_differs_stops_the_run_naming_the_tensor(tmp_path):
    run = tmp_path / "run"
    r = torchrun("G.body.1.running_mean", "train", *RUN, "arch.sync_bn=false",
                 "train.iters=4", "train.ckpt_every=2", f"hydra.run.dir={run}", cwd=tmp_path,
                 script=str(ROOT / "tests" / "rank_fault.py"))
    assert r.returncode != 0
    msg = " ".join(r.stderr.split())
    assert "ranks disagree: models.G.body.1.running_mean differs between rank 0 and rank 1" \
        in msg, r.stderr[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and status["iter"] == 2
    assert "models.G.body.1.running_mean" in status["reason"]
    assert not (run / "checkpoints" / "last.pt").exists()  # nothing written from bad state


# ---- backend and device from the config -------------------------------------------------------

@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has `n` GPUs (0: no CUDA)."""
    def have(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return have


def test_backend_follows_the_device(gpus):
    gpus(2)
    assert distributed.plan_backend("cpu", 2, 2) == "gloo"  # CPU ranks on a GPU host
    assert distributed.plan_backend("auto", 2, 2) == "nccl"
    assert distributed.plan_backend("cuda", 4, 2) == "nccl"  # 2 nodes x 2 GPUs
    assert distributed.plan_backend("cuda:1", 1, 1) == "nccl"
    gpus(0)
    assert distributed.plan_backend("auto", 2, 2) == "gloo"


@pytest.mark.parametrize("n_gpus,device,world,local,says", [
    (2, "cuda:1", 2, 2, "device=cuda:1 names one GPU, but torchrun started 2 processes"),
    (1, "cuda", 2, 2, "torchrun started 2 processes on this node, which has 1 GPU(s)"),
    (1, "auto", 4, 2, "use --nproc_per_node=1 or fewer, or device=cpu"),
    (0, "cuda", 2, 2, "CUDA is not available on this machine"),
    (2, "gpu", 2, 2, "auto, cpu, cuda or cuda:N"),
])
def test_impossible_device_combinations_are_refused(gpus, n_gpus, device, world, local, says):
    gpus(n_gpus)
    with pytest.raises(UserError) as err:
        distributed.plan_backend(device, world, local)
    assert says in " ".join(str(err.value).split())


@pytest.fixture
def under_torchrun(monkeypatch, tmp_path):
    """This process as rank 0 of 2 on one node (nothing is started)."""
    for k, v in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
                 "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("n_gpus,args,says", [
    (1, ["device=cuda"], "has 1 GPU(s)"),
    (1, ["device=cuda:0"], "device=cuda:0 names one GPU"),
    (0, ["device=cuda"], "CUDA is not available"),
    (0, ["train.dist_timeout_s=0"], "train.dist_timeout_s=0 is not valid"),
])
def test_the_cli_refuses_before_joining_a_group(cli, gpus, under_torchrun, n_gpus, args, says):
    gpus(n_gpus)
    r = cli("train", *args)
    assert r.code == 2 and says in r.msg and "Traceback" not in r.err, r
    assert not torch.distributed.is_initialized()  # refused before any rendezvous
    assert not (under_torchrun / "outputs").exists()


def test_the_group_gets_the_backend_device_and_timeout(monkeypatch, gpus, under_torchrun):
    made, current = {}, []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: bool(made))
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda **kw: made.update(kw))
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(distributed, "_LAUNCH", {})
    monkeypatch.setenv("LOCAL_RANK", "1")
    gpus(2)
    d = distributed.init_process_group("cuda", "77")
    assert made == {"backend": "nccl", "timeout": timedelta(seconds=77)} and current == [1]
    assert (d.rank, d.world, d.local_rank) == (1, 2, 1)
    assert distributed.device_for("cuda", d) == torch.device("cuda", 1)  # GPU of its rank
    # The composed config must agree with what the group was made from (an experiment
    # setting device= is seen only after the group exists).
    cfg = OmegaConf.create({"device": "cuda", "train": {"dist_timeout_s": 77}})
    distributed.check_launch(cfg)
    cfg.device = "cpu"
    with pytest.raises(UserError, match="pass device=cpu on the command line"):
        distributed.check_launch(cfg)


def test_argv_value_takes_the_last_override():
    argv = ["device=cpu", "train.iters=3", "+device='cuda:1'"]
    assert distributed.argv_value(argv, "device", "auto") == "cuda:1"
    assert distributed.argv_value(["res=16"], "device", "auto") == "auto"


# ---- RNG states across GPU counts -----------------------------------------------------------

@pytest.fixture
def fake_cuda_rng(monkeypatch, gpus):
    """torch.cuda's RNG functions over `states` (one per visible GPU), current GPU `at`."""
    box = {"at": 0, "set": []}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: box["at"])
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device="cuda": torch.tensor([100 + box["at"]], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device="cuda": box["set"].append(int(state[0])))
    return box


def test_rng_state_holds_the_current_gpu_only(gpus, fake_cuda_rng):
    gpus(4)
    fake_cuda_rng["at"] = 2
    state = ckpt.rng_state()
    assert torch.equal(state["cuda"], torch.tensor([102], dtype=torch.uint8))
    ckpt.set_rng_state(state)
    assert fake_cuda_rng["set"] == [102]


def test_old_per_gpu_rng_lists_resume_on_a_node_with_fewer_gpus(gpus, fake_cuda_rng):
    """Old checkpoints hold one CUDA state per visible GPU (8 here); the node resumed on
    sees 2. Each process takes the state of its own GPU, or the last one saved."""
    old = ckpt.rng_state()
    old["cuda"] = [torch.tensor([10 + i], dtype=torch.uint8) for i in range(8)]
    gpus(2)
    for at, expect in ((0, 10), (1, 11)):
        fake_cuda_rng["at"] = at
        ckpt.set_rng_state(old)
        assert fake_cuda_rng["set"][-1] == expect
    short = {**old, "cuda": old["cuda"][:1]}
    fake_cuda_rng["at"] = 1
    ckpt.set_rng_state(short)
    assert fake_cuda_rng["set"][-1] == 10
    gpus(0)  # a CPU-only resume ignores the CUDA state
    ckpt.set_rng_state(old)
    assert len(fake_cuda_rng["set"]) == 3


def test_rng_state_round_trips_through_a_checkpoint_file(tmp_path):
    import random

    import numpy as np
    state = ckpt.rng_state()
    expect = (random.random(), float(np.random.rand()), float(torch.rand(())))
    torch.save(state, tmp_path / "rng.pt")
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expect
