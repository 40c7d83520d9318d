"""Feature-extraction speed of `ganqp fid` against pytorch-fid, measured in one run.

    python scripts/bench_fid.py [--n 200] [--res 64] [--dims 2048] [--device cpu]

1. Folder mode: the same folder of n PNGs through pytorch-fid's get_activations (its
   DataLoader of PIL images, batch 50, min(8, cpus) workers) and through ganqp's extract
   (decoding threads, channels_last, inference mode, batch --batch); images/s and the ratio,
   and the largest feature difference.
2. Checkpoint mode: n samples of a checkpoint (--ckpt, or a 1-iteration digits run made
   here) generated and measured in one step, against the two-step route: `ganqp sample
   format=folder` then pytorch-fid on the folder.

Without the real FID Inception weights (no internet) seeded random weights of the same
structure stand in: the cost does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def interleaved(repeats: int, *fns) -> list[tuple[float, object]]:
    """Best time of each function, the runs alternating so that a machine shared with other
    work slows both sides alike."""
    best: list[tuple[float, object]] = [(float("inf"), None)] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            out = fn()
            best[k] = min(best[k], (time.perf_counter() - t0, out), key=lambda p: p[0])
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--dims", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--no-frechet", action="store_true", help="skip the distance timing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_fid_") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:

    from ganqp_cli.extractors import hub_weights_file, make_extractor, random_inception_weights
    if not hub_weights_file().is_file():
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        random_inception_weights(hub_weights_file())
        print("weights: seeded random stand-ins (no real file in the torch hub cache)")
    else:
        print(f"weights: {hub_weights_file()}")
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    from ganqp_cli.features import extract, folder_source, generator_source
    from ganqp_cli.sampling import latents, load_trained, write_folder

    folder = tmp / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    imgs = torch.nn.functional.interpolate(torch.rand(args.n, 3, 8, 8, generator=g),
                                           size=args.res, mode="bilinear")
    for i in range(args.n):
        arr = (imgs[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.png")
    files = sorted(folder.glob("*.png"))

    device = torch.device(args.device)
    theirs_model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[args.dims]]).to(device)
    ours_model = make_extractor("inception", args.dims, None, device)
    workers = min(8, len(os.sched_getaffinity(0)))
    print(f"{args.n} PNGs at {args.res} px, {args.dims}-d features, device {device}, "
          f"{torch.get_num_threads()} torch threads")

    def theirs() -> np.ndarray:
        return get_activations(files, theirs_model, 50, args.dims, device, workers)

    def ours() -> np.ndarray:
        return extract(folder_source(str(folder), "samples"), ours_model, args.batch,
                       args.workers)

    theirs()  # warm-up both (first-call allocations, worker start-up)
    ours()
    (t_theirs, f_theirs), (t_ours, f_ours) = interleaved(args.repeats, theirs, ours)
    diff = float(np.abs(f_ours - f_theirs).max() / np.abs(f_theirs).max())
    print(f"folder     pytorch-fid {args.n / t_theirs:8.1f} img/s | ganqp {args.n / t_ours:8.1f} "
          f"img/s | ratio {t_theirs / t_ours:.2f}x | max feature difference {diff:.1e} "
          "(relative)")

    ckpt = args.ckpt
    if ckpt is None:
        run = tmp / "run"
        subprocess.run([sys.executable, "-m", "ganqp_cli", "train", "train.iters=1",
                        f"res={args.res}", "train.batch_size=16", "device=cpu",
                        f"hydra.run.dir={run}"], check=True, capture_output=True)
        ckpt = str(run / "checkpoints" / "last.pt")
    trained = load_trained(ckpt, device=str(device))
    z = latents(args.n, trained.z_dim, 0)

    def one_step() -> np.ndarray:
        return extract(generator_source(trained.G, z, device, "bench"), ours_model,
                       args.batch, args.workers)

    out = tmp / "samples"

    def two_step() -> np.ndarray:
        write_folder(trained.G, args.n, trained.z_dim, out, 0, 1.0, device, 256)
        return get_activations(sorted(out.glob("*.png")), theirs_model, 50, args.dims,
                               device, workers)

    one_step()
    (t_one, _), (t_two, _) = interleaved(args.repeats, one_step, two_step)
    print(f"checkpoint ganqp fid ckpt= {args.n / t_one:8.1f} img/s | sample to folder + "
          f"pytorch-fid {args.n / t_two:8.1f} img/s | ratio {t_two / t_one:.2f}x "
          f"({trained.shape[0]}-channel {trained.shape[1]} px samples)")
    if args.no_frechet:
        return

    # 3. The distance itself, from (mu, sigma) of 10,000-sample-like statistics
    from ganqp_cli.fid import Stats, frechet_distance
    rng = np.random.RandomState(0)
    n = 2 * args.dims + 1000
    a = Stats.of(np.abs(rng.randn(n, args.dims)).astype(np.float32))
    b = Stats.of((np.abs(rng.randn(n, args.dims)) * 1.1).astype(np.float32))
    a.features = b.features = None  # as with a reference .npz: the d x d route
    (t_sqrtm, v_sqrtm), (t_eig, v_eig) = interleaved(
        args.repeats, lambda: frechet_distance(a, b, "scipy"),
        lambda: frechet_distance(a, b, "eig", device))
    print(f"distance   pytorch-fid sqrtm {t_sqrtm:6.2f} s | ganqp eig {t_eig:6.2f} s | ratio "
          f"{t_sqrtm / t_eig:.2f}x | {args.dims}-d, relative difference "
          f"{abs(v_eig - v_sqrtm) / v_sqrtm:.1e}")


if __name__ == "__main__":
    main()
