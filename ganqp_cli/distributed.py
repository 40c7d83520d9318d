"""Data-parallel helpers: process group set-up, gathers, checks (the gradient exchange:
grad_exchange.py).

Started by torchrun (RANK/WORLD_SIZE/LOCAL_RANK in the environment) the process group is
created before Hydra runs, so that rank 0 can choose the run directory and every rank uses
it. The backend follows `device=` (read from the command line, since the config is not
composed yet): NCCL for CUDA, one GPU per local rank, gloo for the CPU; combinations that
cannot work are refused before any work. `train.dist_timeout_s` bounds how long a collective
waits for a rank that has died or hangs. A plain single process uses no group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganqp_cli.errors import UserError

DEFAULT_TIMEOUT_S = 1800
# What this process's group was created with: {"device": ..., "timeout_s": ...}.
_LAUNCH: dict[str, Any] = {}


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def argv_value(argv: list[str], key: str, default: str) -> str:
    """The value of `key=...` on a Hydra command line (the last one wins, as in Hydra)."""
    found = [a.split("=", 1)[1] for a in argv
             if "=" in a and a.split("=", 1)[0].lstrip("+") == key]
    return found[-1].strip("'\"") if found else default


def plan_backend(device: str, world: int, local_world: int, local_rank: int = 0) -> str:
    """The backend for `device=` with `world` processes, `local_world` on this node; a
    UserError (exit 2) for what cannot work: an unknown device, CUDA on a machine without
    it, cuda:N with several processes, more processes on a node than it has GPUs."""
    from ganqp_cli import checks
    checks.device("device", device)  # the syntax, and CUDA present where asked for
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "gloo"
    if device.startswith("cuda:") and world > 1:
        raise UserError(f"device={device} names one GPU, but torchrun started {world} "
                        "processes and each needs its own: use device=cuda (the process of "
                        "local rank r takes GPU r; choose the GPUs with CUDA_VISIBLE_DEVICES), "
                        "or start one process.")
    n = torch.cuda.device_count()
    if max(local_world, local_rank + 1) > n:
        raise UserError(f"device={device}: torchrun started {max(local_world, local_rank + 1)} "
                        f"processes on this node, which has {n} GPU(s), and every process "
                        f"needs its own GPU: use --nproc_per_node={n} or fewer, or device=cpu.")
    return "nccl"


def timeout_from(value: Any) -> int:
    """`train.dist_timeout_s`, checked (it is read before the config is composed)."""
    from ganqp_cli import checks
    text = str(value).strip()
    seconds = int(text) if text.isdigit() else value
    return int(checks.whole("train.dist_timeout_s", seconds, 1,
                            note=" (seconds a collective waits for every rank)"))


def init_process_group(device: str = "auto", timeout_s: Any = DEFAULT_TIMEOUT_S) -> Dist:
    """Create the default group once (idempotent); returns this process's place in it."""
    if not launched_by_torchrun():
        return Dist()
    if not dist.is_initialized():
        env = os.environ
        world, local_rank = int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
        local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
        backend = plan_backend(str(device), world, local_world, local_rank)
        seconds = timeout_from(timeout_s)
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))
        _LAUNCH.update(device=str(device), timeout_s=seconds, backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def check_launch(cfg: Any) -> None:
    """The composed config must agree with what the group was created with from the command
    line; a config file (an experiment) setting `device` or `train.dist_timeout_s` is seen
    only now, too late to change the group."""
    if not _LAUNCH:
        return
    now = {"device": str(cfg.device),
           "timeout_s": timeout_from(cfg.train.get("dist_timeout_s", DEFAULT_TIMEOUT_S))}
    keys = {"device": "device", "timeout_s": "train.dist_timeout_s"}
    for k, key in keys.items():
        if now[k] != _LAUNCH[k]:
            raise UserError(f"{key}={now[k]} comes from a config file, but under torchrun the "
                            f"process group is created from the command line before the config "
                            f"is composed (it used {key}={_LAUNCH[k]}): pass {key}={now[k]} on "
                            "the command line.")


def current() -> Dist:
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Dist()


def prepare_launch(argv: list[str]) -> list[str]:
    """Under torchrun: join the group and make all ranks agree on one run directory.

    Hydra would otherwise resolve `${now:...}` separately on every rank, seconds apart.
    Rank 0's choice is broadcast and passed to every rank as `hydra.run.dir`; ranks other
    than 0 write no `.hydra/` record and no log file of their own.
    """
    if not launched_by_torchrun() or "-m" in argv or "--multirun" in argv:
        return argv
    d = init_process_group(argv_value(argv, "device", "auto"),
                           argv_value(argv, "train.dist_timeout_s", str(DEFAULT_TIMEOUT_S)))
    chosen = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    default = "outputs/" + datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    box = [chosen[-1] if chosen else default]
    dist.broadcast_object_list(box, src=0)
    argv = [a for a in argv if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={box[0]}"]
    if not d.is_main:
        argv += ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra/hydra_logging=none"]
    return argv


def device_for(requested: str, d: Dist) -> torch.device:
    """`auto` picks this rank's GPU when CUDA exists, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", d.local_rank)
    return torch.device(requested)


def broadcast_module(modules: Iterable[nn.Module], src: int = 0) -> None:
    """Copy parameters and buffers from rank `src` to every rank."""
    if not current().enabled:
        return
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    for t in tensors:
        dist.broadcast(t.data, src=src)


def mean_over_ranks(v: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks, left on its device (itself in one process)."""
    d = current()
    if not d.enabled:
        return v
    v = v.clone()
    dist.all_reduce(v)
    return v / d.world


def all_reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of scalar tensors over ranks, as Python floats (one collective)."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    d = current()
    if d.enabled:
        dist.all_reduce(stacked)
        stacked /= d.world
    return dict(zip(keys, stacked.tolist(), strict=True))


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's rows in rank order (rows may differ in number per rank)."""
    d = current()
    if not d.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    padded = torch.zeros((m, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(d.world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


def broadcast_object(obj: object, src: int = 0) -> object:
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn: Callable[[], None], what: str) -> None:
    """Run `fn` on rank 0 alone; every rank learns whether it succeeded, and if it raised,
    every rank raises RunFailed with its reason at once (not after train.dist_timeout_s
    in the next collective). `what` names the work in the message."""
    d = current()
    if not d.enabled:
        fn()
        return
    failure: str | None = None
    if d.is_main:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - reported to every rank, then raised
            failure = f"{type(err).__name__}: {err}"
            error: Exception | None = err
        else:
            error = None
    failure = broadcast_object(failure)
    if failure:
        from ganqp_cli.errors import RunFailed
        message = f"rank 0 failed {what} ({failure}); every rank stops."
        if d.is_main:
            raise RunFailed(message) from error
        raise RunFailed(message)


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def group_was_created() -> bool:
    """Whether this process created a process group (a torchrun worker)."""
    return bool(_LAUNCH)


def _named_tensors(modules: dict[str, nn.Module]) -> list[tuple[str, torch.Tensor]]:
    return [(f"{prefix}.{name}", t.detach()) for prefix, m in modules.items()
            for name, t in (*m.named_parameters(), *m.named_buffers())]


def check_ranks_agree(modules: dict[str, nn.Module]) -> None:
    """Stop the run (RunFailed naming the first differing tensor) unless every rank holds
    the same parameters and buffers (BatchNorm statistics, spectral-norm vectors, EMA).

    Gradients are averaged and buffers synchronised, so all ranks must agree exactly; a
    mismatch means a rank skipped a collective or drew different data. One collective of a
    float64 fingerprint (sum and sum of squares) per tensor."""
    d = current()
    if not d.enabled:
        return
    named = _named_tensors(modules)
    fp = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()])
                      for _, t in named]).flatten()
    every = [torch.zeros_like(fp) for _ in range(d.world)]
    dist.all_gather(every, fp)
    for r, other in enumerate(every[1:], start=1):
        bad = (other != every[0]).view(-1, 2).any(1).nonzero()
        if bad.numel():
            from ganqp_cli.errors import RunFailed
            name = named[int(bad[0])][0]
            raise RunFailed(f"ranks disagree: {name} differs between rank 0 and rank {r} "
                            f"({int(bad.numel())} tensors differ). This is a bug in ganqp or "
                            "a rank that drew other data; the last checkpoint is kept.")


def ranks_agree(modules: Iterable[nn.Module]) -> bool:
    """Whether every rank holds the same parameters and buffers."""
    try:
        check_ranks_agree({str(i): m for i, m in enumerate(modules)})
    except Exception:  # noqa: BLE001 - the answer, not the message, is wanted here
        return False
    return True


def average_buffers(modules: Iterable[nn.Module]) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over ranks, so that
    samples, FID and checkpoints use one generator. Each rank's statistics come from its own
    shard of the batch unless arch.sync_bn is on (then they already agree)."""
    d = current()
    if not d.enabled:
        return
    bufs = [b for m in modules for b in m.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for b in bufs:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def global_randn(local: int, *shape: int, device: torch.device | str) -> torch.Tensor:
    """This rank's rows of a normal draw for the global batch: every rank's RNG is seeded
    alike and draws all `local * world` rows, so the run does not depend on the number of
    processes (one process with the global batch draws the same numbers)."""
    d = current()
    full = torch.randn(local * d.world, *shape, device=device)
    return full[d.rank * local:(d.rank + 1) * local]


def global_rand(local: int, *shape: int, device: torch.device | str,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """As global_randn, uniform on [0, 1)."""
    d = current()
    full = torch.rand(local * d.world, *shape, device=device, dtype=dtype)
    return full[d.rank * local:(d.rank + 1) * local]
