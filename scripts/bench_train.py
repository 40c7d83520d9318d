"""Benchmark ganqp's training loop and data loader against references measured in the same run.

1. Training images/s of `ganqp train` (the real loop: EMA, logging every --log-every
   iterations, all of it: the wall time between two log lines) against a minimal
   hand-written PyTorch loop with the same networks, objective (GAN-QP L1), batch and
   optimiser, both on the same in-memory images. Runs alternate (A B A B ...) in fresh
   subprocesses and the median of each is reported, with peak memory (max RSS on the CPU,
   max allocated on CUDA).
2. On 2 gloo processes (torchrun, CPU): the time of an iteration with arch.sync_bn against
   one without, and the buffer average and rank check (run before sample grids, FID and
   checkpoints) in iterations, all in the same run.
3. Data-loader images/s (ganqp's Batches over a folder of JPEGs, decode + crop + resize)
   against the training images/s at the same resolution.

    python scripts/bench_train.py                     # arch=dcgan res=64 batch 64
    python scripts/bench_train.py --iters 40 --repeats 5 --loader-res 64 128
    python scripts/bench_train.py --no-dist --loader-res   # the training ratio only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ganqp(a: argparse.Namespace) -> dict:
    from ganqp_cli.cli import main
    run = Path(tempfile.mkdtemp(prefix="bench_ganqp_"))
    total = a.warmup + a.iters
    main(["train", f"arch={a.arch}", f"res={a.res}", "arch.width=1.0", f"device={a.device}",
          f"train.batch_size={a.batch}", f"train.iters={total}", f"train.log_every={a.log_every}",
          "train.sample_every=0", "train.ckpt_every=0", "train.keep_ckpts=0",
          f"hydra.run.dir={run}"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # Wall time between the first log line at or after the warm-up and the last one: the
    # iterations and every log line in between (a row's own it_per_s leaves its log line out).
    first = next(r for r in rows if r["iter"] >= a.warmup)
    last = rows[-1]
    it_per_s = (last["iter"] - first["iter"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {"img_per_s": it_per_s * a.batch * 3, "peak_mb": peak_mb(torch.device(a.dev))}


def child_reference(a: argparse.Namespace) -> dict:
    """The minimal loop: the same networks, loss, Adam settings, batch, 2 critic steps."""
    from ganqp_cli.data import Digits
    from ganqp_cli.networks import DCGANArch, QPArch
    torch.manual_seed(0)
    dev = torch.device(a.dev)
    arch = DCGANArch() if a.arch == "dcgan" else QPArch()
    data = Digits(a.res)
    images = data.to_model(data.tensor).to(dev)
    shape = tuple(images.shape[1:])
    G, D = arch.generator(shape).to(dev), arch.critic(shape).to(dev)
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))

    def batch() -> torch.Tensor:
        return images[torch.randint(0, images.shape[0], (a.batch,), device=dev)]

    def step() -> None:
        G.requires_grad_(False)
        D.requires_grad_(True)
        for _ in range(2):
            real, z = batch(), torch.randn(a.batch, arch.z_dim, device=dev)
            fake = G(z)
            dT = (D(real) - D(fake)).flatten()
            d = (real - fake).abs().flatten(1).mean(1)
            loss = (-dT + dT.square() / (2 * 10.0 * d)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
        D.requires_grad_(False)
        G.requires_grad_(True)
        real, z = batch(), torch.randn(a.batch, arch.z_dim, device=dev)
        loss = (D(real) - D(G(z))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    for _ in range(a.warmup):
        step()
    loss_sync(dev)
    t0 = time.perf_counter()
    for _ in range(a.iters):
        step()
    loss_sync(dev)
    return {"img_per_s": a.iters * a.batch * 3 / (time.perf_counter() - t0),
            "peak_mb": peak_mb(dev)}


def loss_sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def child_loader(a: argparse.Namespace) -> dict:
    from ganqp_cli.data import Batches, ImageFolder
    data = ImageFolder(a.folder, res=a.res, hflip=True)
    batches = Batches(data, a.batch, seed=0, device=torch.device("cpu"), workers=a.workers)
    for _ in range(3):
        next(batches)  # workers started and queues filled
    t0 = time.perf_counter()
    n = max(8, a.iters)
    for _ in range(n):
        next(batches)
    return {"img_per_s": n * a.batch / (time.perf_counter() - t0), "peak_mb": peak_mb(
        torch.device("cpu"))}


def child_dist(a: argparse.Namespace) -> dict | None:
    """Under torchrun, 2 gloo processes: seconds per training iteration (the loop's own
    `iteration`) without and with arch.sync_bn, and per call of the buffer average and the
    rank check; timed blocks alternate so machine load drifts hit all alike."""
    from hydra import compose, initialize_config_module

    from ganqp_cli import distributed as dist_
    from ganqp_cli.data import Batches
    from ganqp_cli.training.phases import Guard, iteration, phases
    from ganqp_cli.training.setup import Setup, seed_all
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
                                            workers=0))

    def timed(fn, n: int) -> float:
        dist_.barrier()
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        dist_.barrier()
        return (time.perf_counter() - t0) / n

    def train(sync: bool) -> float:
        s, plan, batches = runs[sync]
        guard = Guard(10**9)

        def z() -> torch.Tensor:
            return dist_.global_randn(s.local_batch, s.z_dim, device=dev)
        return timed(lambda i: iteration(s, plan, batches, z, guard, i), a.dist_iters)

    s = runs[False][0]
    for sync in (False, True):
        train(sync)  # warm-up
    out: dict[str, list[float]] = {"plain": [], "sync_bn": [], "average": [], "check": []}
    for _ in range(a.repeats):
        out["plain"].append(train(False))
        out["sync_bn"].append(train(True))
        out["average"].append(timed(lambda i: dist_.average_buffers([s.models, s.ema]), 50))
        out["check"].append(timed(lambda i: dist_.check_ranks_agree({"models": s.models,
                                                                 "ema": s.ema}), 20))
    dist_.shutdown()
    return {k: statistics.median(v) for k, v in out.items()} if d.is_main else None


def spawn_dist(a: argparse.Namespace) -> dict:
    args = {**vars(a), "mode": "dist"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           __file__, "--child", json.dumps(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise SystemExit(f"dist child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_jpegs(folder: Path, n: int, size: int) -> None:
    """Smooth random colour images (JPEG-compressible like photos), `size` px square."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=90)


def spawn(mode: str, a: argparse.Namespace, **over) -> dict:
    args = {**vars(a), **over, "mode": mode}
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", default="dcgan", choices=["dcgan", "gan-qp"])
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=30, help="timed generator iterations")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--log-every", type=int, default=10,
                   help="ganqp's train.log_every (the timed span includes its log lines)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--loader-res", type=int, nargs="*", default=[64, 128])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--source-size", type=int, default=512, help="side of the JPEGs on disk")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                   help="the training ratio against the hand-written loop")
    p.add_argument("--dist", action=argparse.BooleanOptionalAction, default=True,
                   help="also time arch.sync_bn and the buffer sync on 2 gloo processes")
    p.add_argument("--dist-res", type=int, default=32)
    p.add_argument("--dist-width", type=float, default=0.25)
    p.add_argument("--dist-iters", type=int, default=10, help="iterations per timed block")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def run_child(spec: str) -> None:
    ns = argparse.Namespace(**json.loads(spec))
    ns.dev = "cuda" if ns.device == "auto" and torch.cuda.is_available() else (
        "cpu" if ns.device == "auto" else ns.device)
    fn = {"ganqp": child_ganqp, "reference": child_reference, "loader": child_loader,
          "dist": child_dist}
    result = fn[ns.mode](ns)
    if result is not None:  # (under torchrun: rank 0 only)
        print(json.dumps(result))


def report_training(a: argparse.Namespace) -> None:
    ours, ref = [], []
    for _ in range(a.repeats):
        ref.append(spawn("reference", a))
        ours.append(spawn("ganqp", a))
    o = statistics.median(r["img_per_s"] for r in ours)
    r = statistics.median(x["img_per_s"] for x in ref)
    print(f"training img/s   ganqp {o:8.1f}   hand-written {r:8.1f}   ratio {o / r:.3f} "
          f"(goal >= 0.97)   runs: ganqp {[round(x['img_per_s'], 1) for x in ours]}, "
          f"reference {[round(x['img_per_s'], 1) for x in ref]}")
    print(f"peak memory MB   ganqp {max(x['peak_mb'] for x in ours):8.1f}   hand-written "
          f"{max(x['peak_mb'] for x in ref):8.1f}")


def main() -> None:
    a = parser().parse_args()
    if a.child:
        run_child(a.child)
        return
    print(f"# bench_train: arch={a.arch} res={a.res} batch={a.batch}, {a.iters} timed iters "
          f"after {a.warmup} warm-up, {a.repeats} alternating repeats; torch "
          f"{torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}, "
          f"CUDA {torch.cuda.is_available()}")
    if a.train:
        report_training(a)

    if a.dist:
        t = spawn_dist(a)
        it = t["plain"]
        print(f"2 gloo processes, {a.arch} res {a.dist_res} width {a.dist_width} batch "
              f"{a.batch}: s/iter plain {it:.4f}, arch.sync_bn {t['sync_bn']:.4f}   "
              f"sync_bn/plain time {t['sync_bn'] / it:.3f}")
        print(f"  buffer average {t['average'] * 1e3:.3f} ms/call = {t['average'] / it:.4f} "
              f"iterations; rank check {t['check'] * 1e3:.3f} ms/call = {t['check'] / it:.4f} "
              "iterations (each runs once per sample grid, FID or checkpoint)")

    if not a.loader_res:
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        make_jpegs(folder, 512, a.source_size)
        for res in a.loader_res:
            load = spawn("loader", a, res=res, folder=str(folder))
            train = spawn("ganqp", a, res=res)
            print(f"res {res:4d}: loader img/s {load['img_per_s']:8.1f} ({a.workers} workers, "
                  f"{a.source_size}px JPEGs)   training img/s {train['img_per_s']:7.1f}   "
                  f"loader/training {load['img_per_s'] / train['img_per_s']:.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
