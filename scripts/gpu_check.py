"""The checks that need a GPU, in one run (under 8 minutes on one GPU), printed as one table:

1. every objective, 50 iterations at 64 px on the digits, in bf16 and in fp16 (autocast,
   GradScaler for fp16): finite losses or not, and how many updates were skipped;
2. spectral norm's sigma under fp16 autocast, torch's parametrisation against ganqp's
   (ganqp_cli.spectral), relative to float32;
3. scripts/bench_train.py's ratio, ganqp train against the hand-written loop, at 128 px;
4. FID of the same generated images with the extractor on the GPU and on the CPU (digits
   classifier; Inception too with the real weights, or seeded random ones if absent);
5. resume exactness with train.deterministic=true: 3 + 3 iterations against 6, bitwise.

    python scripts/gpu_check.py                 # on a GPU machine
    python scripts/gpu_check.py --cpu-smoke     # everything reduced, on the CPU (CI-sized)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# cuBLAS reads its workspace setting when first used: before torch touches the GPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

ALL_OBJECTIVES = ["gan-qp", "gan-qp-l2", "bigan-qp", "o-gan", "wgan", "wgan-gp", "wgan-div",
                  "wgan-sn", "sgan-sn", "lsgan-sn", "hinge-sn", "fgan-kl", "fgan-reverse-kl",
                  "fgan-pearson", "fgan-hellinger", "fgan-js", "fgan-gan"]
ROWS: list[tuple[str, str, str, str]] = []  # (check, setting, result, verdict)


def row(check: str, setting: str, result: str, ok: bool | None) -> None:
    ROWS.append((check, setting, result, "-" if ok is None else ("ok" if ok else "FAIL")))
    print(f"  {check}: {result}", flush=True)


def objectives() -> list[str]:
    from importlib.resources import files
    have = {p.name[:-5] for p in (files("ganqp_cli.conf") / "objective").iterdir()
            if p.name.endswith(".yaml")}
    return [o for o in ALL_OBJECTIVES if o in have] + sorted(have - set(ALL_OBJECTIVES))


def train(args: list[str], run: Path, log: Path) -> int:
    """`ganqp train` in this process, its output appended to `log`; the exit status."""
    from ganqp_cli.cli import main
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            main(["train", *args, f"hydra.run.dir={run}"])
            return 0
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 1


def check_objectives(a: argparse.Namespace, work: Path) -> None:
    names = objectives() if a.objectives == "all" else a.objectives.split(",")
    base = [f"device={a.device}", f"res={a.res}", f"train.iters={a.iters}",
            f"train.log_every={max(1, a.iters // 5)}", "train.sample_every=0",
            "train.ckpt_every=0", "train.workers=0", "train.sample_n=4"]
    if a.cpu_smoke:
        base += ["arch.width=0.125", "train.batch_size=8"]
    for amp in ("bf16", "fp16"):
        for name in names:
            run = work / f"obj-{name}-{amp}"
            small = a.cpu_smoke and name == "bigan-qp"  # its joint critic head: 1024 wide
            args = [f"objective={name}", f"train.amp={amp}", *base,
                    *(["objective.hidden=32"] if small else [])]
            t0 = time.time()
            code = train(args, run, work / "train.log")
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] \
                if (run / "metrics.jsonl").is_file() else []
            finite = code == 0 and bool(rows) and all(
                v is not None and math.isfinite(v) for r in rows for v in r.values())
            last = rows[-1] if rows else {}
            losses = ", ".join(f"{k} {last[k]:.4g}" if last.get(k) is not None else
                               f"{k} n/a (updates skipped)" for k in ("d_loss", "g_loss"))
            result = (f"exit {code}, losses {'finite' if finite else 'NOT finite'}: {losses}, "
                      f"skipped {int(last.get('skipped_steps') or 0)}, {time.time() - t0:.0f} s")
            row(f"objective {name}", f"{amp}, {a.iters} it, {a.res} px", result, finite)


def check_spectral(a: argparse.Namespace) -> None:
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm as torch_sn

    from ganqp_cli.spectral import spectral_norm
    dev = torch.device(a.dev)
    amp = torch.float16 if dev.type == "cuda" else torch.bfloat16
    errs = {}
    for name, make in (("torch", torch_sn), ("ganqp", spectral_norm)):
        torch.manual_seed(0)
        layer = make(nn.Linear(512, 512)).to(dev).eval()  # eval: the same u, v both times
        w32 = layer.weight.detach().clone()
        with torch.autocast(dev.type, dtype=amp):
            w_amp = layer.weight.detach().float()
        errs[name] = float((w_amp - w32).abs().max() / w32.abs().max())
    row("spectral norm sigma", f"{str(amp)[6:]} autocast, {dev.type}",
        f"max relative weight error: torch {errs['torch']:.2e}, ganqp {errs['ganqp']:.2e}",
        errs["ganqp"] == 0.0)


def check_bench(a: argparse.Namespace) -> None:
    script = Path(__file__).with_name("bench_train.py")
    cmd = [sys.executable, str(script), "--res", str(a.bench_res), "--device", a.device,
           "--iters", str(a.bench_iters), "--warmup", str(max(2, a.bench_iters // 4)),
           "--log-every", str(max(1, a.bench_iters // 4)), "--repeats", "1", "--no-dist",
           "--loader-res"] + (["--batch", "8"] if a.cpu_smoke else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("training img/s")), None)
    if out.returncode != 0 or line is None:
        row("bench_train ratio", f"{a.bench_res} px", f"failed: {out.stderr[-300:]}", False)
        return
    ratio = float(line.split("ratio")[1].split()[0])
    row("bench_train ratio", f"dcgan {a.bench_res} px, {a.device}",
        f"ganqp / hand-written img/s = {ratio:.3f} (goal >= 0.97)", ratio >= 0.97)


def _features(kind: str, weights: str | None, images: torch.Tensor, dev: torch.device):
    from ganqp_cli.metrics.extractors import make_extractor
    from ganqp_cli.metrics.features import Source, extract
    ext = make_extractor(kind, None, weights, dev)
    src = Source(images.shape[0], "check images", batch=lambda lo, hi: images[lo:hi])
    return extract(src, ext, batch=100, workers=1).features


def check_fid(a: argparse.Namespace, work: Path) -> None:
    """The same uint8 images (digits as references, an untrained generator's as samples)."""
    from ganqp_cli.data import Digits
    from ganqp_cli.metrics.frechet import frechet_distance
    from ganqp_cli.metrics.inception import hub_weights_file, random_inception_weights
    from ganqp_cli.metrics.stats import Stats
    from ganqp_cli.networks import QPArch
    data = Digits(a.res)
    real = torch.stack([data.load(i) for i in range(min(len(data), a.fid_n))])
    torch.manual_seed(0)
    G = QPArch(width=0.25).generator(tuple(data.shape)).eval()
    with torch.no_grad():
        fake = ((G(torch.randn(a.fid_n, G.z_dim)).clamp(-1, 1) + 1) * 127.5).round().byte()
    devices = [torch.device(a.dev), torch.device("cpu")]
    kinds = [("digits", None, a.fid_n)]
    if not a.cpu_smoke:
        real_w = hub_weights_file().is_file()
        w = None if real_w else str(random_inception_weights(work / "inception_random.pth"))
        kinds.append((f"inception ({'real' if real_w else 'random'} weights)", w,
                      a.inception_n))
    for label, weights, n in kinds:
        kind = label.split()[0]
        fids = [frechet_distance(Stats.of(_features(kind, weights, real[:n], d)),
                                 Stats.of(_features(kind, weights, fake[:n], d)))
                for d in devices]
        rel = abs(fids[0] - fids[1]) / max(abs(fids[1]), 1e-12)
        row(f"FID {devices[0].type} vs cpu", f"{label}, {n} images",
            f"{fids[0]:.6g} vs {fids[1]:.6g}, relative difference {rel:.2e}", rel < 1e-3)


def check_resume(a: argparse.Namespace, work: Path) -> None:
    args = [f"device={a.device}", f"res={a.res}", "train.deterministic=true",
            "train.sample_every=0", "train.ckpt_every=3", "train.workers=0",
            "train.sample_n=4", "train.log_every=1", f"train.amp={a.resume_amp}"]
    if a.cpu_smoke:
        args += ["arch.width=0.125", "train.batch_size=8"]
    one, two, log = work / "resume-one", work / "resume-two", work / "train.log"
    codes = [train([*args, "train.iters=6"], one, log), train([*args, "train.iters=3"], two, log),
             train([*args, "train.iters=6"], two, log)]
    if any(codes):
        row("resume exactness", "deterministic", f"runs exited {codes}", False)
        return
    sa, sb = (torch.load(p / "checkpoints" / "last.pt", weights_only=True) for p in (one, two))
    diffs = [float((sa[part][k].double() - sb[part][k].double()).abs().max())
             for part in ("models", "ema") for k in sa[part] if sa[part][k].numel()]
    worst = max(diffs)
    row("resume exactness", f"3 + 3 vs 6 it, {a.res} px, amp {a.resume_amp}, deterministic",
        "bitwise equal (models, EMA)" if worst == 0 else f"max abs difference {worst:.3e}",
        worst == 0)


def print_table(total_s: float, dev: str) -> None:
    widths = [max(len(r[i]) for r in [("check", "setting", "result", "ok"), *ROWS])
              for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"\n# gpu_check on {dev}, torch {torch.__version__}, {total_s:.0f} s")
    print(line.format("check", "setting", "result", "ok"))
    print(line.format(*("-" * w for w in widths)))
    for r in ROWS:
        print(line.format(*r))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="reduced sizes, on the CPU")
    p.add_argument("--objectives", default=None, help="comma list or 'all' (the default; "
                   "--cpu-smoke: gan-qp,wgan-gp,bigan-qp)")
    p.add_argument("--skip", default="", help="comma list of: objectives, spectral, bench, "
                   "fid, resume")
    a = p.parse_args()
    smoke = a.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; use --cpu-smoke for the reduced "
                         "CPU run.")
    a.device, a.dev = ("cpu", "cpu") if smoke else ("cuda", "cuda")
    a.objectives = a.objectives or ("gan-qp,wgan-gp,bigan-qp" if smoke else "all")
    a.res, a.iters = (16, 2) if smoke else (64, 50)
    a.bench_res, a.bench_iters = (16, 4) if smoke else (128, 40)
    a.fid_n, a.inception_n = (64, 0) if smoke else (1000, 500)
    a.resume_amp = "off"
    skip = set(filter(None, a.skip.split(",")))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ganqp_gpu_check_") as tmp:
        work = Path(tmp)
        steps = [("objectives", lambda: check_objectives(a, work)),
                 ("spectral", lambda: check_spectral(a)), ("bench", lambda: check_bench(a)),
                 ("fid", lambda: check_fid(a, work)), ("resume", lambda: check_resume(a, work))]
        for name, step in steps:
            if name in skip:
                continue
            print(f"# {name} ({time.time() - t0:.0f} s)", flush=True)
            try:
                step()
            except Exception as err:  # noqa: BLE001 - one failed check must not hide the rest
                row(name, "", f"raised {type(err).__name__}: {str(err)[:200]}", False)
        if any(r[3] == "FAIL" for r in ROWS) and (work / "train.log").is_file():
            print((work / "train.log").read_text()[-3000:])
    print_table(time.time() - t0, torch.cuda.get_device_name() if not smoke else "cpu (smoke)")
    sys.exit(1 if any(r[3] == "FAIL" for r in ROWS) else 0)


if __name__ == "__main__":
    main()
