"""Benchmark ganqp's training loop and data loader against references measured in the same run.

1. Training images/s of `ganqp train` (the real loop: EMA, logging every --log-every
   iterations, all of it: the wall time between two log lines) against a minimal
   hand-written PyTorch loop with the same networks, objective (GAN-QP L1), batch and
   optimiser, both on the same in-memory images, in fresh processes. Pairs alternate which
   side runs first (scripts/paired.py); the ratio is printed as min / median / max over the
   pairs, with peak memory (max RSS on the CPU, max allocated on CUDA). Beside it: the
   blocking calls (host reads of the device: training.syncs) per plain iteration of the real
   loop, as this device runs it and on the device path a GPU takes. Before it (--blocks):
   the loop body (training.phases.iteration and the statistics meter, as `ganqp train` runs
   them) against the hand-written iteration in one process, in alternated blocks of
   --block-iters iterations: drift in the machine's speed over seconds cancels in each pair.
2. On 2 gloo processes (torchrun, CPU): seconds per plain iteration (the loop's `iteration`
   and its stop-flag round) without and with arch.sync_bn, and the buffer average and rank
   check (run before sample grids, FID and checkpoints) in iterations. With `--before REF`
   the same is measured on the code of git ref REF (extracted with `git archive`, run from
   there) in launches alternating with this tree's, and the before/after time ratios are
   printed as spreads over the pairs, with each side's blocking calls per iteration.
3. Data-loader images/s (ganqp's Batches over a folder of JPEGs, decode + crop + resize)
   against the training images/s at the same resolution, in --loader-pairs alternated
   pairs of fresh processes per resolution (--loader-res; none: the section is skipped).

    python scripts/bench_train.py                     # arch=dcgan res=64 batch 64
    python scripts/bench_train.py --res 32 --batch 32 --iters 20 --pairs 7 --no-dist --loader-res
    python scripts/bench_train.py --no-train --loader-res --before main~3 --pairs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train_dist import child_dist, device_path, load_syncs, report_dist  # noqa: E402
from loop_body import loop_body, sync  # noqa: E402
from paired import Spread, load_average, measure_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


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
          f"train.threads={a.threads}",  # as the hand-written loop's (the digits preset: 1)
          "train.sample_every=0", "train.ckpt_every=0", "train.keep_ckpts=0",
          f"hydra.run.dir={run}"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(run, ignore_errors=True)
    # Wall time between the first log line at or after the warm-up and the last one: the
    # iterations and every log line in between (a row's own it_per_s leaves its log line out).
    first = next(r for r in rows if r["iter"] >= a.warmup)
    last = rows[-1]
    it_per_s = (last["iter"] - first["iter"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {"img_per_s": it_per_s * a.batch * 3, "peak_mb": peak_mb(torch.device(a.dev))}


def child_reference(a: argparse.Namespace) -> dict:
    dev = torch.device(a.dev)
    step = reference_step(a, dev)
    for _ in range(a.warmup):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(a.iters):
        step()
    sync(dev)
    return {"img_per_s": a.iters * a.batch * 3 / (time.perf_counter() - t0),
            "peak_mb": peak_mb(dev)}


def reference_step(a: argparse.Namespace, dev: torch.device) -> Callable[[], None]:
    """One iteration of the minimal loop: the same networks, loss, Adam settings, batch,
    2 critic steps, and no critic pass on reals in the generator step (their score has no
    gradient for G)."""
    from ganqp_cli.data import Digits
    from ganqp_cli.networks import DCGANArch, QPArch
    torch.manual_seed(0)
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
        real, z = batch(), torch.randn(a.batch, arch.z_dim, device=dev)  # drawn, as ganqp
        loss = -D(G(z)).mean()  # E[dT] less E[T(x_r)], which has no gradient for G
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    return step


def ganqp_step(a: argparse.Namespace, dev: torch.device) -> Callable[[], None]:
    """One iteration of ganqp's loop body as `ganqp train` runs it (scripts/loop_body.py)."""
    return loop_body([f"arch={a.arch}", f"res={a.res}", "arch.width=1.0",
                      f"train.batch_size={a.batch}", f"train.threads={a.threads}"],
                     dev, log_every=a.log_every)


def child_blocks(a: argparse.Namespace) -> dict:
    """Both loops in one process, timed in alternated blocks of --block-iters iterations: a
    machine's speed drifts over seconds, and blocks a second apart see the same machine."""
    dev = torch.device(a.dev)
    sides = {"ganqp": ganqp_step(a, dev), "reference": reference_step(a, dev)}

    def block(name: str) -> float:
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(a.block_iters):
            sides[name]()
        sync(dev)
        return a.block_iters * a.batch * 3 / (time.perf_counter() - t0)

    for name in sides:
        for _ in range(a.warmup):
            sides[name]()
    got: dict[str, list[float]] = {"ganqp": [], "reference": []}

    def side(name: str) -> float:
        got[name].append(block(name))
        return got[name][-1]
    ratios = measure_pairs(lambda: side("ganqp"), lambda: side("reference"), a.block_pairs)
    return {"ratios": ratios, "ganqp": statistics.median(got["ganqp"]),
            "reference": statistics.median(got["reference"])}


def child_loader(a: argparse.Namespace) -> dict:
    from ganqp_cli.data import Batches, ImageFolder
    data = ImageFolder(a.folder, res=a.res, hflip=True)
    batches = Batches(data, a.batch, seed=0, device=torch.device("cpu"), workers=a.workers)
    for _ in range(3):
        next(batches)  # workers started and queues filled
    # at least --loader-seconds: 20 batches took 0.3 s, and 4 worker processes on 2 cores
    # moved that short a window's rate by 12 % between invocations
    t0, n = time.perf_counter(), 0
    while n < max(8, a.iters) or time.perf_counter() - t0 < a.loader_seconds:
        next(batches)
        n += 1
    return {"img_per_s": n * a.batch / (time.perf_counter() - t0), "peak_mb": peak_mb(
        torch.device("cpu"))}


def child_syncs(a: argparse.Namespace) -> dict:
    """Blocking calls per iteration of the real `ganqp train` after the warm-up (the log
    lines and checkpoints happen between iterations, not in them), as this device runs the
    guard, and on the device path."""
    from ganqp_cli.training import loop
    syncs, step, counts, cuda = load_syncs(), loop.iteration, [], []

    def counted(s, plan, batches, draw_z, guard, it):  # noqa: ANN001, ANN202
        if it < a.warmup:
            return step(s, plan, batches, draw_z, guard, it)
        with syncs.SyncCounter(host=syncs.host_state([s.opt_d, s.opt_g])) as c:
            out = step(s, plan, batches, draw_z, guard, it)
        counts.append(c.count)
        cuda.append(c.device_syncs)  # torch's own CUDA sync detection (0 on the CPU)
        return out

    loop.iteration = counted
    out = {}
    for name, on in (("as_run", False), ("device_path", True)):
        device_path(on)
        counts.clear()
        cuda.clear()
        child_ganqp(argparse.Namespace(**{**vars(a), "iters": 6}))
        out[name], out[f"{name}_cuda"] = statistics.mean(counts), statistics.mean(cuda)
    return out


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
    p.add_argument("--pairs", type=int, default=5,
                   help="alternated pairs per ratio (scripts/paired.py); 0: no fresh-process "
                        "training ratio")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed blocks per configuration inside one 2-process launch")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of both loops (0: torch's default)")
    p.add_argument("--loader-res", type=int, nargs="*", default=[64, 128])
    p.add_argument("--workers", type=int, default=4,
                   help="loader processes (train.workers' default)")
    p.add_argument("--loader-pairs", type=int, default=5,
                   help="alternated loader / training pairs per --loader-res resolution")
    p.add_argument("--loader-seconds", type=float, default=3.0,
                   help="the loader's shortest timed window")
    p.add_argument("--source-size", type=int, default=512, help="side of the JPEGs on disk")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                   help="the training ratio against the hand-written loop")
    p.add_argument("--blocks", action=argparse.BooleanOptionalAction, default=True,
                   help="also both loops in one process, in alternated blocks")
    p.add_argument("--block-iters", type=int, default=5, help="iterations per block")
    p.add_argument("--block-pairs", type=int, default=21, help="alternated pairs of blocks")
    p.add_argument("--dist", action=argparse.BooleanOptionalAction, default=True,
                   help="also time arch.sync_bn and the buffer sync on 2 gloo processes")
    p.add_argument("--dist-res", type=int, default=32)
    p.add_argument("--dist-width", type=float, default=0.25)
    p.add_argument("--dist-iters", type=int, default=10, help="iterations per timed block")
    p.add_argument("--before", metavar="REF",
                   help="also time the 2-process iteration on git ref REF's code, in launches "
                        "alternating with this tree's")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def run_child(spec: str) -> None:
    ns = argparse.Namespace(**json.loads(spec))
    ns.dev = "cuda" if ns.device == "auto" and torch.cuda.is_available() else (
        "cpu" if ns.device == "auto" else ns.device)
    if ns.mode in ("reference", "blocks") and ns.threads > 0:
        torch.set_num_threads(ns.threads)
    fn = {"ganqp": child_ganqp, "reference": child_reference, "loader": child_loader,
          "dist": child_dist, "syncs": child_syncs, "blocks": child_blocks}
    result = fn[ns.mode](ns)
    if result is not None:  # (under torchrun: rank 0 only)
        print(json.dumps(result))


def report_training(a: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {"ganqp": [], "reference": []}

    def side(mode: str) -> float:
        runs[mode].append(spawn(mode, a))
        return runs[mode][-1]["img_per_s"]

    if a.blocks:
        b = spawn("blocks", a)
        print(Spread.of(b["ratios"]).line(
            f"loop body img/s in one process, blocks of {a.block_iters} iterations, ganqp / "
            "hand-written (goal >= 0.97)"))
        print(f"  img/s: ganqp median {b['ganqp']:.1f}, hand-written {b['reference']:.1f}")
    if a.pairs < 1:
        return
    ratios = measure_pairs(lambda: side("ganqp"), lambda: side("reference"), a.pairs)
    calls = spawn("syncs", a)
    print(Spread.of(ratios).line("ganqp train (log lines included) in fresh processes, img/s, "
                                 "ganqp / hand-written (goal >= 0.97)"))
    print(f"  img/s: ganqp median {statistics.median(r['img_per_s'] for r in runs['ganqp']):.1f}"
          f", hand-written {statistics.median(r['img_per_s'] for r in runs['reference']):.1f}"
          f"; blocking calls per plain iteration: {calls['as_run']:.2f} as the {a.dev.upper()} "
          f"runs the guard, {calls['device_path']:.2f} on the device path a GPU takes")
    if a.dev == "cuda":
        print(f"  CUDA syncs torch detected per plain iteration (set_sync_debug_mode): "
              f"{calls['as_run_cuda']:.2f}")
    print(f"  peak memory MB: ganqp {max(x['peak_mb'] for x in runs['ganqp']):.1f}, "
          f"hand-written {max(x['peak_mb'] for x in runs['reference']):.1f}")


def main() -> None:
    a = parser().parse_args()
    if a.child:
        run_child(a.child)
        if json.loads(a.child)["mode"] == "dist":
            leave_gloo_worker()
        return
    a.dev = "cuda" if a.device == "auto" and torch.cuda.is_available() else (
        "cpu" if a.device == "auto" else a.device)
    print(f"# bench_train: arch={a.arch} res={a.res} batch={a.batch}, {a.iters} timed iters "
          f"after {a.warmup} warm-up, {a.pairs} alternated pairs; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, threads {torch.get_num_threads()}, CUDA "
          f"{torch.cuda.is_available()}; {load_average()}")
    if a.train:
        report_training(a)
    if a.dist:
        report_dist(a)
    if a.loader_res:
        report_loader(a)
    print(f"# {load_average()}")


def leave_gloo_worker() -> None:
    """A torchrun child ends without the interpreter's finalization (ganqp_cli.worker_exit
    says why); a --before tree older than that module keeps its normal exit."""
    try:
        from ganqp_cli.worker_exit import exit_before_finalizing
    except ImportError:
        return
    exit_before_finalizing(0)


def report_loader(a: argparse.Namespace) -> None:
    """Per resolution, the loader's images/s over training's, in --loader-pairs alternated
    pairs of fresh processes (the loader must keep ahead of training: goal >= 3x)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        make_jpegs(folder, 512, a.source_size)
        for res in a.loader_res:
            rates: dict[str, list[float]] = {"loader": [], "ganqp": []}
            ratios = measure_pairs(*(spawned_rate(mode, a, rates[mode], res=res,
                                                  folder=str(folder))
                                     for mode in ("loader", "ganqp")), a.loader_pairs)
            print(Spread.of(ratios).line(
                f"res {res}: loader img/s ({a.workers} workers, {a.source_size}px JPEGs) / "
                "training img/s (goal >= 3x)", ".1f"))
            print(f"  img/s: loader median {statistics.median(rates['loader']):.1f}, "
                  f"training median {statistics.median(rates['ganqp']):.1f}")


def spawned_rate(mode: str, a: argparse.Namespace, into: list[float], **over: object
                 ) -> Callable[[], float]:
    """A side of a pair: one fresh `mode` child's images/s, also kept in `into`."""
    def side() -> float:
        into.append(spawn(mode, a, **over)["img_per_s"])
        return into[-1]
    return side

if __name__ == "__main__":
    main()
