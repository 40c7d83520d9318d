"""Speed of `ganqp fid` against pytorch-fid, and of the metrics against extraction, in one run.

    python scripts/bench_fid.py [--n 100] [--res 64] [--dims 2048] [--pairs 7] [--device cpu]
                                [--sections folder,ckpt,distance] [--knn-n 10000]

Every section times both sides in alternated pairs (scripts/paired.py: A B, B A, ...) and
prints the per-pair ratio's median, min and max, and the medians of the odd and the even
pairs (a stability check); the load average is printed at the start and the end.

folder: the same folder of n PNGs through pytorch-fid's get_activations (its DataLoader of
   PIL images, batch 50, min(8, cpus) workers) and through ganqp's extract (decoding
   threads, folded and fused conv units, channels_last, inference mode, batch --batch); the
   ratio is pytorch-fid's time over ganqp's, with the largest feature difference.
ckpt: n samples of a checkpoint (--ckpt, or a 1-iteration digits run made here) generated
   and measured in one step, against the two-step route: `ganqp sample format=folder` then
   pytorch-fid on the folder.
distance: pytorch-fid's sqrtm against ganqp's eigenvalue route, 2048-d statistics.
profile (not run by default): where ganqp's time goes, per image: decoding (in --workers
   threads), resizing, the network; the two networks alone in alternated pairs, in wall
   and CPU time; each network's time by kind of operation (torch profiler, self time).
clean (not run by default): ganqp with fid.resize=clean (PIL bicubic) against the legacy
   resize, both ganqp.
metrics (not run by default): every metric of the registry on --knn-n generated and --knn-n
   reference features of --dims dimensions (and 1008 logits), timed once each, against the
   time extracting those 2 x --knn-n images takes at ganqp's rate of the folder section
   (extrapolated from n images, and printed as such).

Without the real FID Inception weights (no internet) seeded random weights of the same
structure stand in: the cost does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import Spread, load_average, measure_pairs  # noqa: E402


def timed(fn: Callable[[], object], log: list[float]) -> Callable[[], float]:
    """`fn` as a measurement for measure_pairs: its seconds, also appended to `log`."""
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        log.append(time.perf_counter() - t0)
        return log[-1]
    return run


def rate_line(n: int, names: tuple[str, str], logs: tuple[list[float], list[float]]) -> str:
    return " | ".join(f"{name} {n / statistics.median(log):.2f} img/s (median)"
                      for name, log in zip(names, logs, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per timing")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--dims", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=7, help="alternated pairs per section")
    ap.add_argument("--distance-pairs", type=int, default=15)
    ap.add_argument("--profile-batch", type=int, default=10,
                    help="profile: images per timed network call")
    ap.add_argument("--profile-pairs", type=int, default=60,
                    help="profile: alternated pairs of network calls")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--sections", default="folder,ckpt,distance",
                    help="any of folder, ckpt, distance, profile, clean, metrics")
    ap.add_argument("--knn-n", type=int, default=10000,
                    help="features per side in the metrics section")
    args = ap.parse_args()
    args.sections = set(args.sections.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"start: {load_average()}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_fid_") as tmp:
        run(args, Path(tmp))
    print(f"end: {load_average()}; {time.perf_counter() - t0:.0f} s in all")


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
    models = (InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[args.dims]]).to(device),
              make_extractor("inception", args.dims, None, device))
    print(f"{args.n} images at {args.res} px per timing, {args.dims}-d features, device "
          f"{device}, {torch.get_num_threads()} torch threads, {args.pairs} pairs",
          flush=True)
    folder = write_pngs(tmp / "images", args.n, args.res)
    img_per_s = None
    if "folder" in args.sections or "metrics" in args.sections:
        img_per_s = bench_folder(args, folder, device, *models)
    if "profile" in args.sections:
        bench_profile(args, folder, device, *models)
    if "clean" in args.sections:
        bench_clean(args, folder, device)
    if "ckpt" in args.sections:
        bench_ckpt(args, tmp, device, *models)
    if "distance" in args.sections:
        bench_distance(args, device)
    if "metrics" in args.sections:
        bench_metrics(args, device, img_per_s)


def write_pngs(folder: Path, n: int, res: int) -> Path:
    """n smooth random RGB images (upsampled noise), as PNGs."""
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    imgs = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=res,
                                           mode="bilinear")
    for i in range(n):
        arr = (imgs[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.png")
    return folder


def pytorch_fid_on(folder: Path, model, dims: int, device: torch.device) -> np.ndarray:
    from pytorch_fid.fid_score import get_activations
    workers = min(8, len(os.sched_getaffinity(0)))  # pytorch-fid's own default
    return get_activations(sorted(folder.glob("*.png")), model, 50, dims, device, workers)


def ganqp_on(folder: Path, model, args: argparse.Namespace) -> np.ndarray:
    from ganqp_cli.metrics.features import extract, folder_source
    return extract(folder_source(str(folder), "samples"), model, args.batch,
                   args.workers).features


def bench_folder(args: argparse.Namespace, folder: Path, device: torch.device, theirs_model,
                 ours_model) -> float:
    """pytorch-fid against ganqp on one folder; returns ganqp's median images/s."""
    f_theirs = pytorch_fid_on(folder, theirs_model, args.dims, device)  # warm-up, and
    f_ours = ganqp_on(folder, ours_model, args)                         # the agreement
    diff = float(np.abs(f_ours - f_theirs).max() / np.abs(f_theirs).max())
    logs: tuple[list[float], list[float]] = ([], [])
    ratios = measure_pairs(
        timed(lambda: pytorch_fid_on(folder, theirs_model, args.dims, device), logs[0]),
        timed(lambda: ganqp_on(folder, ours_model, args), logs[1]), args.pairs)
    print(f"folder     {rate_line(args.n, ('pytorch-fid', 'ganqp'), logs)}; max feature "
          f"difference {diff:.1e} (relative)")
    print("           " + Spread.of(ratios).line("ganqp / pytorch-fid speed", ".2f"), flush=True)
    return args.n / statistics.median(logs[1])


KINDS = (("convolution", ("convolution",)), ("batch norm", ("batch_norm",)),
         ("relu", ("relu", "clamp_min")), ("concatenation", ("aten::cat",)),
         ("pooling", ("pool",)), ("resize", ("upsample",)))


def op_shares(fn: Callable[[], object]) -> str:
    """One run of `fn` under torch's profiler: self time by kind of operation."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    totals: dict[str, float] = {}
    for ev in prof.key_averages():
        kind = next((k for k, keys in KINDS if any(key in ev.key for key in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + ev.self_cpu_time_total
    whole = sum(totals.values())
    return " | ".join(f"{k} {100 * v / whole:.0f}%"
                      for k, v in sorted(totals.items(), key=lambda kv: -kv[1]))


def bench_profile(args: argparse.Namespace, folder: Path, device: torch.device,
                  theirs_model, ours_model) -> None:
    """Decoding, resizing and the network of ganqp's extraction, timed apart; the networks
    alone (ganqp's with its resize, pytorch-fid's with its own) in alternated pairs of one
    batch of --profile-batch images each, --profile-pairs pairs: this machine's speed
    scatters by about 10% between any two timings, long or short, so many short pairs pin
    the median where 15 pairs of all n images moved it 11% between invocations. In wall
    time and in the process's CPU time (all threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from ganqp_cli.metrics.features import decode
    files = sorted(folder.glob("*.png"))
    wall: dict[str, list[float]] = {"decode": [], "resize": [], "ganqp": [], "pytorch-fid": []}
    cpu: dict[str, list[float]] = {"ganqp": [], "pytorch-fid": []}

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def clock(name: str, fn: Callable[[], object], count: int) -> object:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync()
        wall[name].append((time.perf_counter() - t0) / count)
        if name in cpu:
            cpu[name].append((time.process_time() - c0) / count)
        return out

    with ThreadPoolExecutor(args.workers) as pool:
        for _ in range(args.pairs):
            images = clock("decode", lambda: torch.stack(list(pool.map(decode, files))),
                           len(files))
    chunks = images.split(args.profile_batch)

    def ours_network(part: torch.Tensor) -> None:
        with torch.inference_mode():
            t0 = time.perf_counter()
            x = ours_model.network_input(part.to(device))
            sync()
            resize[0] += time.perf_counter() - t0
            ours_model.network(x, False)

    def theirs_network(part: torch.Tensor) -> None:
        with torch.no_grad():  # pytorch-fid's resize is inside its network
            theirs_model(part.to(device).float() / 255)

    def ours() -> float:
        part, resize[0] = chunks[len(wall["ganqp"]) % len(chunks)], 0.0
        clock("ganqp", lambda: ours_network(part), len(part))
        wall["resize"].append(resize[0] / len(part))
        return wall["ganqp"][-1]

    def theirs() -> float:
        part = chunks[len(wall["pytorch-fid"]) % len(chunks)]
        clock("pytorch-fid", lambda: theirs_network(part), len(part))
        return wall["pytorch-fid"][-1]

    resize = [0.0]
    ours_network(chunks[0])  # warm-up at the timed batch size, untimed
    theirs_network(chunks[0])
    ratios = measure_pairs(theirs, ours, args.profile_pairs)
    print_profile(wall, cpu, ratios, args)
    part = images[:args.batch]
    print(f"           ganqp network by operation:       {op_shares(lambda: ours_network(part))}")
    print(f"           pytorch-fid network by operation: "
          f"{op_shares(lambda: theirs_network(part[:50]))}", flush=True)


def print_profile(wall: dict[str, list[float]], cpu: dict[str, list[float]],
                  ratios: list[float], args: argparse.Namespace) -> None:
    ms = {k: 1000 * statistics.median(v) for k, v in wall.items()}
    cms = {k: 1000 * statistics.median(v) for k, v in cpu.items()}
    print(f"profile    per image, medians: decode {ms['decode']:.1f} ms ({args.workers} "
          f"threads) | ganqp resize {ms['resize']:.1f} ms, resize + network {ms['ganqp']:.1f} "
          f"ms wall, {cms['ganqp']:.1f} ms CPU | pytorch-fid's network (its resize "
          f"included) {ms['pytorch-fid']:.1f} ms wall, {cms['pytorch-fid']:.1f} ms CPU; "
          f"networks in batches of {args.profile_batch}")
    cpu_ratios = [a / b for a, b in zip(cpu["pytorch-fid"], cpu["ganqp"], strict=True)]
    print("           " + Spread.of(ratios).line("networks alone, ganqp / pytorch-fid speed",
                                                 ".2f"))
    print("           " + Spread.of(cpu_ratios).line(
        "networks alone, pytorch-fid / ganqp CPU time", ".2f"))


def bench_clean(args: argparse.Namespace, folder: Path, device: torch.device) -> None:
    from ganqp_cli.metrics.extractors import make_extractor
    legacy = make_extractor("inception", args.dims, None, device)
    clean = make_extractor("inception", args.dims, None, device, resize="clean")
    ganqp_on(folder, clean, args)
    logs: tuple[list[float], list[float]] = ([], [])
    # make_extractor keeps one extractor built: each side holds its own
    ratios = measure_pairs(timed(lambda: ganqp_on(folder, clean, args), logs[0]),
                           timed(lambda: ganqp_on(folder, legacy, args), logs[1]), args.pairs)
    print(f"clean      {rate_line(args.n, ('fid.resize=clean', 'legacy'), logs)}")
    print("           " + Spread.of(ratios).line("clean / legacy time", ".2f"), flush=True)


def bench_ckpt(args: argparse.Namespace, tmp: Path, device: torch.device, theirs_model,
               ours_model) -> None:
    """Generate-and-measure in one step against sample-to-folder + pytorch-fid."""
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
    out = tmp / "samples"

    def one_step() -> np.ndarray:
        return extract(generator_source(trained.G, z, device, "bench"), ours_model,
                       args.batch, args.workers).features

    def two_step() -> np.ndarray:
        write_folder(trained.G, args.n, trained.z_dim, out, 0, 1.0, device, 256)
        return pytorch_fid_on(out, theirs_model, args.dims, device)

    one_step()
    logs: tuple[list[float], list[float]] = ([], [])
    ratios = measure_pairs(timed(two_step, logs[0]), timed(one_step, logs[1]), args.pairs)
    print(f"checkpoint {rate_line(args.n, ('sample + pytorch-fid', 'ganqp fid ckpt='), logs)} "
          f"({trained.shape[0]}-channel {trained.shape[1]} px samples)")
    print("           " + Spread.of(ratios).line("ganqp / two-step speed", ".2f"), flush=True)


def bench_distance(args: argparse.Namespace, device: torch.device) -> None:
    """The distance itself, from (mu, sigma) of 10,000-sample-like statistics."""
    from ganqp_cli.metrics.frechet import frechet_distance
    from ganqp_cli.metrics.stats import Stats
    rng = np.random.RandomState(0)
    n = 2 * args.dims + 1000
    a = Stats.of(np.abs(rng.randn(n, args.dims)).astype(np.float32))
    b = Stats.of((np.abs(rng.randn(n, args.dims)) * 1.1).astype(np.float32))
    a.features = b.features = None  # as with a reference .npz: the d x d route
    v_sqrtm, v_eig = frechet_distance(a, b, "scipy"), frechet_distance(a, b, "eig", device)
    logs: tuple[list[float], list[float]] = ([], [])
    ratios = measure_pairs(timed(lambda: frechet_distance(a, b, "scipy"), logs[0]),
                           timed(lambda: frechet_distance(a, b, "eig", device), logs[1]),
                           args.distance_pairs)
    print(f"distance   pytorch-fid sqrtm {statistics.median(logs[0]):.2f} s | ganqp eig "
          f"{statistics.median(logs[1]):.2f} s (medians) | {args.dims}-d, relative "
          f"difference {abs(v_eig - v_sqrtm) / v_sqrtm:.1e}")
    print("           " + Spread.of(ratios).line("eig / sqrtm speed", ".2f"), flush=True)


def bench_metrics(args: argparse.Namespace, device: torch.device, img_per_s: float) -> None:
    """Each metric on --knn-n x --dims features per side, against extracting."""
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
    print(f"metrics    {n} generated + {n} reference features, {d}-d, device {device}, "
          "one timing each")
    for label, t in times.items():
        print(f"  {label:44s} {t:8.2f} s  ({100 * t / extraction:5.1f} % of extraction)")
    total = sum(v for k, v in times.items() if "cached" not in k)
    print(f"  {'all metrics (fid, kid, pr, dc, is)':44s} {total:8.2f} s  "
          f"({100 * total / extraction:5.1f} % of extraction)")
    print(f"  extraction of the {2 * n} images at {img_per_s:.1f} img/s: {extraction:8.1f} s "
          f"(EXTRAPOLATED from the {args.n} images timed in the folder section)")
    if n != 10000:  # the k-NN passes cost n^2 d: scaled to the standard 10k per side
        knn = times["pr + dc (k 3, 5), reference radii computed"] * (10000 / n) ** 2
        print(f"  pr + dc at 10000 per side: {knn:.1f} s, {100 * knn / (20000 / img_per_s):.1f} % "
              f"of extracting 20000 images (both EXTRAPOLATED: k-NN as n^2 from {n}, "
              "extraction linearly)")


if __name__ == "__main__":
    main()
