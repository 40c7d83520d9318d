"""Speed of `ganqp fid` against pytorch-fid, and of the metrics against extraction, in one run.

    python scripts/bench_fid.py [--n 100] [--res 64] [--dims 2048] [--device cpu]
                                [--sections folder,ckpt,distance,metrics] [--knn-n 10000]

1. folder: the same folder of n PNGs through pytorch-fid's get_activations (its
   DataLoader of PIL images, batch 50, min(8, cpus) workers) and through ganqp's extract
   (decoding threads, channels_last, inference mode, batch --batch); images/s and the ratio,
   and the largest feature difference; and ganqp with fid.resize=clean (PIL bicubic).
2. ckpt: n samples of a checkpoint (--ckpt, or a 1-iteration digits run made
   here) generated and measured in one step, against the two-step route: `ganqp sample
   format=folder` then pytorch-fid on the folder.
3. distance: pytorch-fid's sqrtm against ganqp's eigenvalue route, 2048-d statistics.
4. metrics: every metric of the registry on --knn-n generated and --knn-n reference
   features of --dims dimensions (and 1008 logits), timed one by one, against the time
   extracting those 2 x --knn-n images takes at the rate measured in section 1 (that time
   is extrapolated from n images and printed as such).

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
    ap.add_argument("--sections", default="folder,ckpt,distance,metrics")
    ap.add_argument("--knn-n", type=int, default=10000,
                    help="features per side in the metrics section")
    args = ap.parse_args()
    args.sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory(prefix="bench_fid_") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    from ganqp_cli.metrics.inception import hub_weights_file, random_inception_weights
    if not hub_weights_file().is_file():
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        random_inception_weights(hub_weights_file())
        print("weights: seeded random stand-ins (no real file in the torch hub cache)")
    else:
        print(f"weights: {hub_weights_file()}")
    from pytorch_fid.inception import InceptionV3

    from ganqp_cli.metrics.extractors import make_extractor
    device = torch.device(args.device)
    theirs_model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[args.dims]]).to(device)
    ours_model = make_extractor("inception", args.dims, None, device)
    print(f"{args.n} images at {args.res} px, {args.dims}-d features, device {device}, "
          f"{torch.get_num_threads()} torch threads")
    img_per_s = bench_folder(args, tmp, device, ours_model, theirs_model)
    if "ckpt" in args.sections:
        bench_ckpt(args, tmp, device, ours_model, theirs_model)
    if "distance" in args.sections:
        bench_distance(args, device)
    if "metrics" in args.sections:
        bench_metrics(args, device, img_per_s)


def bench_folder(args: argparse.Namespace, tmp: Path, device: torch.device, ours_model,
                 theirs_model) -> float:
    """Section 1 (always: its ganqp rate is section 4's yardstick); ganqp's images/s."""
    from pytorch_fid.fid_score import get_activations

    from ganqp_cli.metrics.extractors import make_extractor
    from ganqp_cli.metrics.features import extract, folder_source
    folder = tmp / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    imgs = torch.nn.functional.interpolate(torch.rand(args.n, 3, 8, 8, generator=g),
                                           size=args.res, mode="bilinear")
    for i in range(args.n):
        arr = (imgs[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.png")
    files = sorted(folder.glob("*.png"))
    workers = min(8, len(os.sched_getaffinity(0)))
    clean_model = make_extractor("inception", args.dims, None, device, resize="clean")

    def theirs() -> np.ndarray:
        return get_activations(files, theirs_model, 50, args.dims, device, workers)

    def ours(model=ours_model) -> np.ndarray:
        return extract(folder_source(str(folder), "samples"), model, args.batch,
                       args.workers).features

    if "folder" not in args.sections:
        ours()
        t_ours, _ = interleaved(args.repeats, ours)[0]
        print(f"folder     ganqp {args.n / t_ours:8.1f} img/s (extraction rate only)")
        return args.n / t_ours
    theirs()  # warm-up (first-call allocations, worker start-up)
    ours()
    ours(clean_model)
    (t_theirs, f_theirs), (t_ours, f_ours), (t_clean, _) = interleaved(
        args.repeats, theirs, ours, lambda: ours(clean_model))
    diff = float(np.abs(f_ours - f_theirs).max() / np.abs(f_theirs).max())
    print(f"folder     pytorch-fid {args.n / t_theirs:8.1f} img/s | ganqp {args.n / t_ours:8.1f} "
          f"img/s | ratio {t_theirs / t_ours:.2f}x | max feature difference {diff:.1e} "
          "(relative)")
    print(f"           ganqp fid.resize=clean {args.n / t_clean:8.1f} img/s "
          f"({t_clean / t_ours:.2f}x the legacy time)")
    return args.n / t_ours


def bench_ckpt(args: argparse.Namespace, tmp: Path, device: torch.device, ours_model,
               theirs_model) -> None:
    """Section 2: generate-and-measure in one step against sample-to-folder + pytorch-fid."""
    from pytorch_fid.fid_score import get_activations

    from ganqp_cli.metrics.features import extract, generator_source
    from ganqp_cli.sampling import latents, load_trained, write_folder
    ckpt = args.ckpt
    if ckpt is None:
        run_dir = tmp / "run"
        subprocess.run([sys.executable, "-m", "ganqp_cli", "train", "train.iters=1",
                        f"res={args.res}", "train.batch_size=16", "device=cpu",
                        f"hydra.run.dir={run_dir}"], check=True, capture_output=True)
        ckpt = str(run_dir / "checkpoints" / "last.pt")
    trained = load_trained(ckpt, device=str(device))
    z = latents(args.n, trained.z_dim, 0)
    workers = min(8, len(os.sched_getaffinity(0)))

    def one_step() -> np.ndarray:
        return extract(generator_source(trained.G, z, device, "bench"), ours_model,
                       args.batch, args.workers).features

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


def bench_distance(args: argparse.Namespace, device: torch.device) -> None:
    """The distance itself, from (mu, sigma) of 10,000-sample-like statistics."""
    from ganqp_cli.metrics.frechet import frechet_distance
    from ganqp_cli.metrics.stats import Stats
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



def bench_metrics(args: argparse.Namespace, device: torch.device, img_per_s: float) -> None:
    """Section 4: each metric on --knn-n x --dims features per side, against extracting."""
    import importlib.resources

    from omegaconf import OmegaConf

    from ganqp_cli.metrics import registry as R
    from ganqp_cli.metrics.stats import Stats
    conf = importlib.resources.files("ganqp_cli.conf").joinpath("fid", "default.yaml")
    fc = OmegaConf.create(conf.read_text())
    n, d = args.knn_n, args.dims
    rng = np.random.RandomState(0)
    real = np.abs(rng.randn(n, d)).astype(np.float32)
    fake = (np.abs(rng.randn(n, d)) * 1.1).astype(np.float32)
    logits = (2 * rng.randn(n, 1008)).astype(np.float32)
    ref = Stats.of(real)
    t0 = time.perf_counter()
    gen = Stats.of(fake)
    times = {"statistics (mean, cov)": time.perf_counter() - t0}
    for label, names in (("fid", ["fid"]), ("kid (100 x 1000)", ["kid"]),
                         ("pr + dc (k 3, 5), reference radii computed", ["pr", "dc"]),
                         ("pr + dc, reference radii cached (training)", ["pr", "dc"]),
                         ("is (10 splits, 1008 classes)", ["is"])):
        inp = R.Inputs(gen, ref, logits, fc, device)
        t0 = time.perf_counter()
        R.compute(R.selected(names), inp)
        times[label] = time.perf_counter() - t0
    extraction = 2 * n / img_per_s
    print(f"metrics    {n} generated + {n} reference features, {d}-d, device {device}")
    for label, t in times.items():
        print(f"  {label:44s} {t:8.2f} s  ({100 * t / extraction:5.1f} % of extraction)")
    total = sum(v for k, v in times.items() if "cached" not in k)
    print(f"  {'all metrics (fid, kid, pr, dc, is)':44s} {total:8.2f} s  "
          f"({100 * total / extraction:5.1f} % of extraction)")
    print(f"  extraction of the {2 * n} images at {img_per_s:.1f} img/s: {extraction:8.1f} s "
          f"(EXTRAPOLATED from the {args.n} images timed in section 1)")
    if n != 10000:  # the k-NN passes cost n^2 d: scaled to the standard 10k per side
        knn = times["pr + dc (k 3, 5), reference radii computed"] * (10000 / n) ** 2
        print(f"  pr + dc at 10000 per side: {knn:.1f} s, {100 * knn / (20000 / img_per_s):.1f} % "
              f"of extracting 20000 images (both EXTRAPOLATED: k-NN as n^2 from {n}, "
              "extraction linearly)")


if __name__ == "__main__":
    main()
