"""The GPU check's speed rows (scripts/gpu_check.py runs them; alone: this script's main).

1. Training images/s of ganqp's loop (training.setup's Setup, the phases' `iteration`,
   the Batches stream: what `ganqp train` runs between its log lines) against a hand-written
   PyTorch loop: the same networks (arch=gan-qp), GAN-QP loss, Adam(2e-4, 0.5, 0.999) fused
   on CUDA, batch, 2 critic steps, an EMA generator, and the same flags (precision,
   channels_last, torch.compile, TF32, cudnn.benchmark), on the same images resident on the
   device. Both run in this process, one after the other, warm-up (and compilation) first.
2. Peak memory of each (torch.cuda.max_memory_allocated; on the CPU, max RSS so far).
3. Model FLOP utilisation: the FLOPs of one iteration's forward and backward passes of G
   and D (torch.utils.flop_counter.FlopCounterMode over one hand-written step) times
   iterations/s, against the GPU's bf16 peak (a datasheet figure where the GPU is known,
   and a bf16 matrix product measured here).
4. The prepared data path (`ganqp prepare`, then the Batches gather threads that a set
   larger than the device-resident limit takes) in images/s, against training's at the
   largest resolution.

    python scripts/gpu_speed.py --cpu-smoke       # every path, tiny, on the CPU
"""

from __future__ import annotations

import contextlib
import copy
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import make_jpegs  # noqa: E402

# Dense bf16 Tensor Core peaks from the vendors' datasheets (TFLOP/s, without sparsity).
DATASHEET_BF16 = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4,
                  "H100 PCIe": 756.0, "H100 NVL": 835.0, "A100": 312.0, "L40S": 362.0,
                  "L4": 121.0, "RTX 4090": 165.2, "A10": 125.0}
# torch.compile's backend per device type: on the CPU (the --cpu-smoke runs) "eager" runs
# Dynamo's capture without AOTAutograd or code generation (gcc: minutes here); the tests of
# train.compile (tests/test_gpu_defaults.py) cover AOTAutograd.
COMPILE_BACKEND = {"cuda": "inductor", "cpu": "eager"}
FLAGS = {  # name: (train.amp, train.channels_last, train.compile)
    "fp32": ("off", False, False),
    "bf16": ("bf16", False, False),
    "bf16 + channels_last": ("bf16", True, False),
    "bf16 + channels_last + compile": ("bf16", True, True),
}


@dataclass
class Speed:
    img_per_s: float
    peak_gib: float
    it_per_s: float


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(step: Callable[[int], None], warmup: int, iters: int, batch: int,
          dev: torch.device) -> Speed:
    """Images/s of `step` (3 real batches an iteration: 2 critic steps, 1 generator step)."""
    for i in range(warmup):
        step(i)
    sync(dev)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + iters):
        step(i)
    sync(dev)
    it_per_s = iters / (time.perf_counter() - t0)
    return Speed(it_per_s * batch * 3, peak_gib(dev), it_per_s)


def compose_train(overrides: list[str]):
    from hydra import compose, initialize_config_module
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def train_overrides(a, res: int, flags: str, root: Path) -> list[str]:
    amp, cl, comp = FLAGS[flags]
    return [f"res={res}", "arch=gan-qp", "objective=gan-qp", f"arch.width={a.width}",
            f"train.batch_size={a.batch}", f"device={a.device}", f"train.amp={amp}",
            f"train.channels_last={str(cl).lower()}", f"train.compile={str(comp).lower()}",
            "train.ema=0.999", "data=folder", f"data.root={root}", "train.workers=0",
            "data.hflip=false"]


def ganqp_speed(a, res: int, flags: str, root: Path) -> Speed:
    from ganqp_cli import distributed as dist_
    from ganqp_cli.data import Batches
    from ganqp_cli.training import compiling
    from ganqp_cli.training.loop import configure_backends
    from ganqp_cli.training.phases import Guard, iteration, phases
    from ganqp_cli.training.setup import Setup, seed_all
    dev = torch.device(a.dev)
    compiling.BACKEND = COMPILE_BACKEND[dev.type]
    cfg = compose_train(train_overrides(a, res, flags, root))
    configure_backends(cfg, dev)
    reset_peak(dev)
    seed_all(0)
    s = Setup(cfg, dist_.Dist(), dev)
    plan, guard = phases(s), Guard(10**9)
    batches = Batches(s.data, s.local_batch, 0, dev, workers=0, memory_format=s.memory_format)

    def draw_z() -> torch.Tensor:
        return dist_.global_randn(s.local_batch, s.z_dim, device=dev)

    try:
        return timed(lambda i: iteration(s, plan, batches, draw_z, guard, i), a.warmup,
                     a.timed, a.batch, dev)
    finally:
        batches.close()


class HandLoop:
    """GAN-QP written out by hand: what ganqp's loop is measured against."""

    def __init__(self, a, res: int, flags: str, images: torch.Tensor) -> None:
        from ganqp_cli.networks import QPArch
        self.dev, self.batch = torch.device(a.dev), a.batch
        amp, cl, comp = FLAGS[flags]
        self.fmt = torch.channels_last if cl else torch.contiguous_format
        torch.manual_seed(0)
        arch = QPArch(width=a.width)
        self.z_dim, shape = arch.z_dim, tuple(images.shape[1:])
        self.G = arch.generator(shape).to(self.dev, memory_format=self.fmt)
        self.D = arch.critic(shape).to(self.dev, memory_format=self.fmt)
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        fused = self.dev.type == "cuda"
        self.opt_d = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.5, 0.999),
                                      fused=fused)
        self.opt_g = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.5, 0.999),
                                      fused=fused)
        backend = COMPILE_BACKEND[self.dev.type]
        self.g, self.d = (torch.compile(self.G, backend=backend),
                          torch.compile(self.D, backend=backend)) if comp else (self.G, self.D)
        self.amp = amp == "bf16"
        self.images = images

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.amp else \
            contextlib.nullcontext()

    def real(self) -> torch.Tensor:
        idx = torch.randint(0, self.images.shape[0], (self.batch,), device=self.dev)
        x = self.images[idx].float() / 127.5 - 1
        return x.contiguous(memory_format=self.fmt)

    def step(self, it: int) -> None:
        G, D, g, d = self.G, self.D, self.g, self.d
        G.requires_grad_(False)
        D.requires_grad_(True)
        for _ in range(2):
            real, z = self.real(), torch.randn(self.batch, self.z_dim, device=self.dev)
            with self.autocast():
                fake = g(z)
                dT = (d(real).float() - d(fake).float()).flatten()
                dist = (real - fake.float()).abs().flatten(1).mean(1)
                loss = (-dT + dT.square() / (2 * 10.0 * dist)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        D.requires_grad_(False)
        G.requires_grad_(True)
        real, z = self.real(), torch.randn(self.batch, self.z_dim, device=self.dev)
        with self.autocast():
            loss = (d(real).float() - d(g(z)).float()).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        with torch.no_grad():
            beta = min(0.999, (1 + it) / (10 + it))
            torch._foreach_lerp_(list(self.ema.parameters()), list(G.parameters()), 1 - beta)
            for b_ema, b in zip(self.ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)


def device_images(root: Path, res: int, dev: torch.device) -> torch.Tensor:
    """The prepared set's uint8 images, on the device (as the training rows' data)."""
    from ganqp_cli.data import open_images
    return open_images(str(root), res).table().storage.to(dev)


def hand_speed(a, res: int, flags: str, root: Path) -> Speed:
    from ganqp_cli.training.loop import configure_backends
    dev = torch.device(a.dev)
    configure_backends(compose_train(train_overrides(a, res, flags, root)), dev)
    reset_peak(dev)
    loop = HandLoop(a, res, flags, device_images(root, res, dev))
    return timed(loop.step, a.warmup, a.timed, a.batch, dev)


def iteration_flops(a, res: int, root: Path) -> float:
    """FLOPs of one GAN-QP iteration's G and D forward and backward passes."""
    from torch.utils.flop_counter import FlopCounterMode
    dev = torch.device(a.dev)
    loop = HandLoop(a, res, "fp32", device_images(root, res, dev))
    loop.step(0)  # lazy state (Adam's moments) first
    with FlopCounterMode(display=False) as counter:
        loop.step(1)
    return float(counter.get_total_flops())


def bf16_peak(dev: torch.device) -> tuple[float | None, float]:
    """(datasheet dense bf16 TFLOP/s or None, measured bf16 matrix-product TFLOP/s)."""
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    sheet = next((v for k, v in DATASHEET_BF16.items() if k in name), None)
    n = 8192 if dev.type == "cuda" else 256
    x = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        x @ y
    sync(dev)
    t0, reps = time.perf_counter(), 10
    for _ in range(reps):
        x @ y
    sync(dev)
    return sheet, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def prepare(source: Path, res: int, out: Path, workers: int) -> Path:
    """`ganqp prepare data=folder data.root=source res=res out=out` in this process."""
    from ganqp_cli.cli import main
    with open(out.parent / f"prepare_{res}.log", "w") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        main(["prepare", "data=folder", f"data.root={source}", f"res={res}", f"out={out}",
              f"workers={workers}", f"hydra.run.dir={out.parent / f'prepare_{res}_hydra'}"])
    return out


def data_speed(a, root: Path, res: int) -> float:
    """Images/s of the prepared set through Batches' host path (gather threads from the
    memory map, pinned copies to the device): the path of a set over the resident limit."""
    from ganqp_cli.data import Batches, open_images
    dev = torch.device(a.dev)
    data = open_images(str(root), res, hflip=True)
    batches = Batches(data, a.batch, 0, dev, workers=a.data_workers, resident_bytes=0)
    try:
        for _ in range(5):
            next(batches)
        sync(dev)
        n, t0 = a.data_iters, time.perf_counter()
        for _ in range(n):
            next(batches)
        sync(dev)
        return n * a.batch / (time.perf_counter() - t0)
    finally:
        batches.close()


def main() -> None:
    import argparse
    import tempfile
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-smoke", action="store_true")
    args = p.parse_args()
    a = argparse.Namespace(dev="cpu" if args.cpu_smoke else "cuda:0", device="cpu"
                           if args.cpu_smoke else "cuda", width=0.125 if args.cpu_smoke else 1.0,
                           batch=4 if args.cpu_smoke else 64, warmup=2, timed=2 if
                           args.cpu_smoke else 30, data_workers=2, data_iters=4)
    res = 16 if args.cpu_smoke else 256
    with tempfile.TemporaryDirectory() as tmp:
        make_jpegs(Path(tmp) / "src", 8 if args.cpu_smoke else 512, res)
        root = prepare(Path(tmp) / "src", res, Path(tmp) / f"p{res}", 2)
        for flags in FLAGS:
            ours, ref = ganqp_speed(a, res, flags, root), hand_speed(a, res, flags, root)
            print(f"{res} px {flags}: ganqp {ours.img_per_s:.1f} img/s, hand-written "
                  f"{ref.img_per_s:.1f}, ratio {ours.img_per_s / ref.img_per_s:.3f}")


if __name__ == "__main__":
    main()
