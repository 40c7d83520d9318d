"""`ganqp train`: the training loop, readable top to bottom.

Validate, lock the run directory, build (training.setup), resume, then: one iteration
(training.phases: critic `objective.d_steps` times, generator once, EMA), then the periodic
work (training.periodic: log line, FID, samples, checkpoint), until `train.iters` or a stop
signal (training.signals). The loop never looks at which objective or data set it runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ganqp_cli import checkpoint as ckpt
from ganqp_cli import distributed as dist_
from ganqp_cli import trackers
from ganqp_cli.classes import check_resume
from ganqp_cli.data import Batches
from ganqp_cli.errors import RunFailed, UserError
from ganqp_cli.logger import RunLogger
from ganqp_cli.metrics.monitor import FidMonitor
from ganqp_cli.training import rundir
from ganqp_cli.training.periodic import Periodic
from ganqp_cli.training.phases import Guard, iteration, phases
from ganqp_cli.training.setup import Setup, seed_all
from ganqp_cli.training.signals import StopSignals
from ganqp_cli.validation import validate_train


def train(cfg: DictConfig) -> dict[str, Any]:
    dist = dist_.init_process_group(str(cfg.device), cfg.train.get("dist_timeout_s",
                                                                    dist_.DEFAULT_TIMEOUT_S))
    dist_.check_launch(cfg)
    validate_train(cfg, dist.world)
    device = dist_.device_for(str(cfg.device), dist)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    lock = lock_run_dir(run_dir, dist)
    threads = torch.get_num_threads()  # train.threads is this run's: the next run of a
    try:  # process (a sweep's jobs in one process) starts from the process's own count
        return run(cfg, dist, device, run_dir)
    except UserError:
        if lock is not None:  # refused before training: leave no lock file behind
            lock.release(remove=True)
            lock = None
        raise
    finally:
        torch.set_num_threads(threads)
        if lock is not None:
            lock.release()


def lock_run_dir(run_dir: Path, dist: dist_.Dist) -> rundir.RunLock | None:
    """Rank 0 takes the run directory's lock; every rank learns whether it did, so that a
    refusal ends every rank with exit 2 rather than leaving the others in a collective."""
    lock, refused = None, None
    if dist.is_main:
        try:
            lock = rundir.RunLock(run_dir).acquire()
        except UserError as err:
            refused = str(err)
    refused = dist_.broadcast_object(refused)
    if refused:
        raise UserError(refused)
    notice = lock.takeover_notice() if lock is not None else None
    if notice:
        print(notice, file=sys.stderr, flush=True)
    return lock


def run(cfg: DictConfig, dist: dist_.Dist, device: torch.device, run_dir: Path
        ) -> dict[str, Any]:
    t = cfg.train
    configure_backends(cfg, device)
    seed_all(cfg.seed)  # networks start identical on every rank
    s = Setup(cfg, dist, device)
    seed_all(cfg.seed * 7919 + 1)  # then one random stream, alike on every rank (z, noise)
    start, consumed, extra, found = resume(s, run_dir)
    log = RunLogger(run_dir, t.iters, start, enabled=dist.is_main,
                    trackers=trackers.build(cfg, run_dir, start) if dist.is_main else ())
    batches = Batches(s.data, s.local_batch, cfg.seed, device, dist.rank, dist.world,
                      t.workers, start_batch=consumed,  # warnings: stderr
                      labels=s.classes is not None, memory_format=s.memory_format)
    fid = FidMonitor.create(cfg, s.data, device, run_dir, extra, start)
    log.info(banner(s, run_dir, found, start))
    for note in s.notes:  # train.compile's choice
        log.info(note)
    plan, guard = phases(s), Guard(int(t.nan_patience))
    periodic = Periodic(s, run_dir, log, batches, fid, extra, guard)

    def draw_z() -> torch.Tensor:
        return dist_.global_randn(s.local_batch, s.z_dim, device=device)

    status = rundir.write_status if dist.is_main else (lambda *a, **k: None)
    status(run_dir, "running", start, t.iters)
    it = start
    periodic.start(it)
    with StopSignals() as stop:
        try:
            while it < t.iters and not stop.should_stop():
                periodic.meter.add(iteration(s, plan, batches, draw_z, guard, it))
                it += 1
                log.step(it)
                periodic.after(it)
            if stop.agreed is not None:  # the same on every rank (a signal in the last
                if periodic.saved_at != it:  # iteration: the run is done, nothing to keep)
                    periodic.checkpoint(it)
                status(run_dir, "interrupted", it, t.iters, signal=stop.name)
                log.info(f"stopped at iteration {it} ({stop.name}); resume with the same "
                         f"command: {periodic.ckpt_dir / 'last.pt'}")
        except KeyboardInterrupt:
            status(run_dir, "interrupted", it, t.iters, signal="SIGINT", aborted=True)
            raise
        except RunFailed as err:
            status(run_dir, "failed", it, t.iters, reason=str(err))
            raise
        except BaseException:
            status(run_dir, "failed", it, t.iters)
            raise
        finally:
            batches.close()
            log.close()
        if stop.agreed is not None:
            stop.hand_over()
            dist_.barrier()
            dist_.shutdown()
            raise SystemExit(stop.exit_code())
    return finish(s, run_dir, log, it)


def configure_backends(cfg: DictConfig, device: torch.device) -> None:
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    deterministic = bool(cfg.train.get("deterministic", False))
    if deterministic:  # cuBLAS needs its workspace fixed before its first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Process-wide, so set for every run that changes it (an earlier run in this process may
    # have turned it on). An op with no deterministic version (e.g. an augmentation's
    # grid_sample backward on CUDA) warns instead of stopping the run. Not called when it is
    # off and stays off: the call imports torch's inductor (0.3 s of every start here).
    if deterministic or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # benchmark picks the fastest algorithm per run, which differs between runs
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.train.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.train.tf32)


def resume(s: Setup, run_dir: Path) -> tuple[int, int, dict[str, Any], tuple[str, Path] | None]:
    """Restore the state to resume from, if any: (iteration, batches drawn, extra, found)."""
    ckpt_dir = run_dir / "checkpoints"
    if s.dist.is_main:
        for p in rundir.remove_stale_temporaries(run_dir):
            print(f"removed {p}, a partial file left by a killed run", flush=True)
    found = dist_.broadcast_object(rundir.find_resume(s.cfg, ckpt_dir))  # rank 0 decides
    start, consumed, extra = 0, 0, {}
    if found:
        key, path = found
        state = ckpt.load(path, key=key)
        ckpt.check_compatible(state["config"], OmegaConf.to_container(s.cfg, resolve=True),
                              str(path))
        check_resume(state, s.classes, str(path))
        s.restore(state)
        start, consumed, extra = int(state["iter"]), int(state["data"]["consumed"]), \
            dict(state["extra"])
    if s.dist.is_main:  # rows after the checkpoint; with none, a run killed before its
        for name in ("metrics.jsonl", "fid.jsonl"):  # first one left rows from iteration 1
            rundir.trim_rows(run_dir / name, start)
    return start, consumed, extra, found


def banner(s: Setup, run_dir: Path, found: tuple[str, Path] | None, start: int) -> str:
    cfg, n = s.cfg, s.counts()
    return (f"ganqp train: {cfg.objective.name} | arch {cfg.arch.name} | data {s.data.name} "
            f"({len(s.data)} items, shape {tuple(s.data.shape)}) | G {n[0] / 1e6:.2f}M, "
            f"critic/encoder {n[1] / 1e6:.2f}M params | {s.device} x{s.dist.world} | "
            f"batch {cfg.train.batch_size} | run dir {run_dir}"
            + (f" | resumed at iter {start} from {found[1]}" if found else ""))


def finish(s: Setup, run_dir: Path, log: RunLogger, it: int) -> dict[str, Any]:
    if s.dist.enabled:
        dist_.check_ranks_agree({"models": s.models, "ema": s.ema})
        log.info(f"parameters and buffers identical on all {s.dist.world} ranks")
    if s.dist.is_main:
        rundir.write_status(run_dir, "done", it, int(s.cfg.train.iters))
        log.info(f"done: {it} iterations; samples in {run_dir / 'samples'}, "
                 f"checkpoint {run_dir / 'checkpoints' / 'last.pt'}")
    dist_.barrier()
    dist_.shutdown()  # a rank exiting with the group still open can abort its peers
    return {"iter": it}
