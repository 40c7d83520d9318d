"""The 2-process half of scripts/bench_train.py (its section 2): seconds per plain training
iteration on 2 gloo processes without and with arch.sync_bn, the buffer average and rank
check, optionally against a git ref's code (--before), and the blocking-call counts both
halves use. A library, not a command: bench_train.py runs it (its --child dist mode
re-enters bench_train.py under torchrun)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from paired import Spread, measure_pairs

ROOT = Path(__file__).resolve().parent.parent
BENCH_TRAIN = Path(__file__).with_name("bench_train.py")


def load_syncs():  # noqa: ANN201 - a module
    """This tree's training/syncs.py, loaded by path: a --before tree has none."""
    spec = importlib.util.spec_from_file_location(
        "bench_syncs", ROOT / "ganqp_cli" / "training" / "syncs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def device_path(on: bool) -> bool:
    """Make the guard take the device path a GPU takes (where this tree has one)."""
    try:
        from ganqp_cli.training import guard
    except ImportError:  # a --before tree
        return False
    guard.HOST_READ_IS_FREE = set() if on else {"cpu"}
    return True


def child_dist(a: argparse.Namespace) -> dict | None:
    """Under torchrun, 2 gloo processes: seconds per plain training iteration (the loop's
    `iteration` and the stop flag's round) without and with arch.sync_bn, the blocking calls
    per iteration of each, and per call of the buffer average and the rank check; timed
    blocks alternate so machine load drifts hit all alike. Runs this tree's code, or a
    --before tree's (PYTHONPATH)."""
    from hydra import compose, initialize_config_module

    from ganqp_cli import distributed as dist_
    from ganqp_cli.data import Batches
    from ganqp_cli.training.phases import Guard, iteration, phases
    from ganqp_cli.training.setup import Setup, seed_all
    from ganqp_cli.training.signals import StopSignals
    torch.set_num_threads(1)
    d, dev = dist_.init_process_group("cpu"), torch.device("cpu")
    runs = {}
    for sync in (False, True):
        with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
            cfg = compose("train", overrides=[
                f"arch={a.arch}", f"res={a.dist_res}", f"arch.width={a.dist_width}",
                f"train.batch_size={a.batch}", "device=cpu", f"arch.sync_bn={str(sync).lower()}"])
        seed_all(0)
        s = Setup(cfg, d, dev)
        runs[sync] = (s, phases(s), Batches(s.data, s.local_batch, 0, dev, d.rank, d.world,
                                            workers=0), Guard(10**9), [0])

    def timed(fn, n: int) -> float:
        dist_.barrier()
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        dist_.barrier()
        return (time.perf_counter() - t0) / n

    def plain_iteration(sync: bool, stop: StopSignals) -> None:
        s, plan, batches, guard, it = runs[sync]
        stop.should_stop()
        iteration(s, plan, batches, lambda: dist_.global_randn(s.local_batch, s.z_dim,
                                                               device=dev), guard, it[0])
        it[0] += 1

    s = runs[False][0]
    out: dict[str, list[float]] = {"plain": [], "sync_bn": [], "average": [], "check": []}
    with StopSignals() as stop:
        for sync in (False, True):
            timed(lambda i, sync=sync: plain_iteration(sync, stop), 2)  # warm-up
        for _ in range(a.repeats):
            out["plain"].append(timed(lambda i: plain_iteration(False, stop), a.dist_iters))
            out["sync_bn"].append(timed(lambda i: plain_iteration(True, stop), a.dist_iters))
            out["average"].append(timed(lambda i: dist_.average_buffers([s.models, s.ema]), 50))
            out["check"].append(timed(lambda i: dist_.check_ranks_agree(
                {"models": s.models, "ema": s.ema}), 20))
        calls = dist_calls(runs, lambda sync: plain_iteration(sync, stop))
    dist_.shutdown()
    if not d.is_main:
        return None
    return {**{k: statistics.median(v) for k, v in out.items()}, "calls": calls}


def dist_calls(runs: dict, plain_iteration) -> dict[str, float]:  # noqa: ANN001
    """Blocking calls per plain iteration with and without arch.sync_bn, on the host path
    and (where torch allows it) on the device path of the guard."""
    syncs, calls = load_syncs(), {}
    for name, sync, on in (("plain", False, False), ("sync_bn", True, False),
                           ("plain_device_path", False, True),
                           ("sync_bn_device_path", True, True)):
        if not device_path(on) and on:
            continue
        r = runs[sync][0]
        with syncs.SyncCounter(host=syncs.host_state([r.opt_d, r.opt_g])) as c:
            for _ in range(3):
                plain_iteration(sync)
        calls[name] = c.count / 3
    return calls


def spawn_dist(a: argparse.Namespace, tree: Path | None = None) -> dict:
    """One torchrun launch of child_dist, on this tree or on `tree` (a --before ref)."""
    args = {**vars(a), "mode": "dist"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(BENCH_TRAIN), "--child", json.dumps(args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"dist child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract(ref: str, into: Path) -> Path:
    """The tree of git ref `ref`, importable: its conf/ where the package expects it."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True,
                         check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    if not (into / "ganqp_cli" / "conf").exists():
        (into / "conf").rename(into / "ganqp_cli" / "conf")
    return into


def report_dist(a: argparse.Namespace) -> None:
    what = f"2 gloo processes, {a.arch} res {a.dist_res} width {a.dist_width} batch {a.batch}"
    if not a.before:
        t = spawn_dist(a)
        print(f"{what}: s/iter plain {t['plain']:.4f}, arch.sync_bn {t['sync_bn']:.4f}   "
              f"sync_bn/plain time {t['sync_bn'] / t['plain']:.3f}; blocking calls per "
              f"iteration {t['calls']}")
        report_buffers(t)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = extract(a.before, Path(tmp))
        got: dict[str, list[dict]] = {"after": [], "before": []}

        def side(name: str) -> float:  # launches alternate; the ratios are taken below
            got[name].append(spawn_dist(a, tree if name == "before" else None))
            return 1.0
        measure_pairs(lambda: side("after"), lambda: side("before"), a.pairs)
    for key in ("plain", "sync_bn"):
        speedups = [b[key] / x[key] for x, b in zip(got["after"], got["before"], strict=True)]
        after = statistics.median(r[key] for r in got["after"])
        before = statistics.median(r[key] for r in got["before"])
        print(f"{what}, {key}: s/iter before ({a.before}) {before:.4f}, after {after:.4f}")
        print("  " + Spread.of(speedups).line(f"{key} iteration time, before / after"))
    for name in ("before", "after"):
        print(f"  blocking calls per iteration, {name}: {got[name][0]['calls']}")
    report_buffers(got["after"][0])


def report_buffers(t: dict) -> None:
    it = t["plain"]
    print(f"  buffer average {t['average'] * 1e3:.3f} ms/call = {t['average'] / it:.4f} "
          f"iterations; rank check {t['check'] * 1e3:.3f} ms/call = {t['check'] / it:.4f} "
          "iterations (each runs once per sample grid, FID or checkpoint)")
