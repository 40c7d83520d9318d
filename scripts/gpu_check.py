"""The checks that need a GPU, in one run of at most 8 minutes on one GPU, printed as one
table and saved as gpu_check.md and gpu_check.json in the folder given by --out:

1. training images/s at 128 and 256 px in fp32, bf16, bf16 + channels_last and
   + torch.compile, each against a hand-written loop with the same flags and an EMA, with
   peak memory and the model FLOP utilisation against the GPU's bf16 peak (gpu_speed.py);
2. the prepared data path's images/s against training's at 256 px (gpu_speed.py);
3. the distributed code path on CUDA tensors, two processes on the one GPU over gloo:
   gradients equal to one process's, the ranks' parameters identical (gpu_dist.py);
4. every objective for a few iterations in bf16 (the default on a GPU) and in fp16: finite
   losses, skipped updates;
5. spectral norm's sigma under fp16 autocast, torch's parametrisation against ganqp's;
6. FID of the same images with the digits extractor on the GPU and on the CPU;
7. resume exactness with train.deterministic=true: 3 + 3 iterations against 6, bitwise.

Rows run in that order; a row that would start after --budget-s seconds is listed as not
run. On the lent GPU machine, scripts/gpu_check_run.sh installs what its Python lacks first.

    python scripts/gpu_check.py --out DIR                 # on a GPU machine
    python scripts/gpu_check.py --cpu-smoke --out DIR     # every row's code path, tiny, CPU
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_speed  # noqa: E402
from bench_train import make_jpegs  # noqa: E402

ALL_OBJECTIVES = ["gan-qp", "gan-qp-l2", "bigan-qp", "o-gan", "wgan", "wgan-gp", "wgan-div",
                  "wgan-sn", "sgan-sn", "lsgan-sn", "hinge-sn", "fgan-kl", "fgan-reverse-kl",
                  "fgan-pearson", "fgan-hellinger", "fgan-js", "fgan-gan"]
CANNOT_SHOW = [
    "One GPU: nothing here runs NCCL or more than one GPU, so multi-GPU scaling, NCCL's "
    "all-reduce overlapping backward on a real interconnect and arch.sync_bn over NCCL are "
    "not measured; the two ranks share one GPU over gloo, which stages CUDA tensors through "
    "the host, so their seconds per iteration say nothing about a multi-GPU run.",
    "The speed rows train on images resident on the GPU (a prepared set under 1 GiB); a "
    "larger set takes the host path that the data row measures.",
    "Speed, not learning: no row trains long enough to judge sample quality at 128-256 px.",
]
ROWS: list[dict] = []
RUN: dict = {}  # out, start, device: for the files written after every row


def row(check: str, setting: str, result: str, ok: bool | None, **values) -> None:
    verdict = "-" if ok is None else ("ok" if ok else "FAIL")
    ROWS.append({"check": check, "setting": setting, "result": result, "ok": verdict,
                 "values": values})
    print(f"  {check} [{setting}]: {result}", flush=True)
    save(done=False)  # a run stopped from outside still leaves the rows so far


def save(done: bool) -> str:
    """Write gpu_check.md and gpu_check.json; returns the Markdown."""
    total = time.time() - RUN["start"]
    text = table(total, RUN["device"]) + ("" if done else "\n\n(incomplete: still running)")
    (RUN["out"] / "gpu_check.md").write_text(text + "\n")
    (RUN["out"] / "gpu_check.json").write_text(json.dumps(
        {"device": RUN["device"], "torch": torch.__version__, "total_s": total,
         "complete": done, "rows": ROWS, "cannot_show": CANNOT_SHOW}, indent=1) + "\n")
    return text


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


def judge(a: argparse.Namespace, ok: bool) -> bool | None:
    """A speed goal's verdict; none for the CPU smoke run (tiny sizes, a loaded machine)."""
    return None if a.cpu_smoke else ok


def check_speed(a: argparse.Namespace, work: Path, deadline: float) -> None:
    """Rows 1 and 2: images/s, peak memory, FLOP utilisation, the prepared data path."""
    sheet, measured = gpu_speed.bf16_peak(torch.device(a.dev))
    peak = sheet or measured
    row("bf16 peak", "matrix product", f"measured {measured:.3g} TFLOP/s; datasheet "
        + (f"{sheet:.0f} TFLOP/s" if sheet else "unknown for this device"), None,
        measured_tflops=measured, datasheet_tflops=sheet)
    source = work / "source"
    make_jpegs(source, a.images, max(a.speed_res))
    roots = {res: gpu_speed.prepare(source, res, work / f"prepared{res}", a.prepare_workers)
             for res in a.speed_res}
    best: dict[int, float] = {}
    for res in a.speed_res:
        flops = gpu_speed.iteration_flops(a, res, roots[res])
        for flags in gpu_speed.FLAGS:
            check = f"img/s {res} px"
            if time.time() > deadline:
                row(check, flags, "not run: past the time budget", None)
                continue
            try:
                speed_row(a, check, res, flags, roots[res], flops, peak, best)
            except Exception as err:  # noqa: BLE001 - the next flags still run
                row(check, flags, f"raised {type(err).__name__}: {str(err)[:300]}", False)
    res = max(a.speed_res)
    if res in best:
        load = gpu_speed.data_speed(a, roots[res], res)
        row("prepared data path", f"{res} px, {a.data_workers} gather threads, host path",
            f"{load:.0f} img/s = {load / best[res]:.1f}x training's best {best[res]:.0f} "
            "img/s (goal >= 3x)", judge(a, load >= 3 * best[res]), data_img_s=load,
            training_img_s=best[res])


def speed_row(a: argparse.Namespace, check: str, res: int, flags: str, root: Path,
              flops: float, peak: float, best: dict[int, float]) -> None:
    if "compile" in flags:
        torch._dynamo.reset()  # a fresh compilation, as a run's
    ours = gpu_speed.ganqp_speed(a, res, flags, root)
    ref = gpu_speed.hand_speed(a, res, flags, root)
    ratio = ours.img_per_s / ref.img_per_s
    mfu = flops * ours.it_per_s / (peak * 1e12)
    best[res] = max(best.get(res, 0.0), ours.img_per_s)
    row(check, flags, f"ganqp {ours.img_per_s:.0f}, hand-written {ref.img_per_s:.0f}: ratio "
        f"{ratio:.3f}; peak memory {ours.peak_gib:.2f} / {ref.peak_gib:.2f} GiB; MFU "
        f"{100 * mfu:.1f}% ({flops / 1e9:.3g} GFLOP/iteration)", judge(a, ratio >= 0.97),
        ganqp_img_s=ours.img_per_s, hand_img_s=ref.img_per_s, ratio=ratio,
        ganqp_peak_gib=ours.peak_gib, hand_peak_gib=ref.peak_gib, mfu=mfu,
        tflop_per_iteration=flops / 1e12)


def check_dist(a: argparse.Namespace, work: Path) -> None:
    """Row 3: two gloo ranks on the one GPU against one process."""
    import gpu_dist
    out = work / "dist.pt"
    script = Path(__file__).with_name("gpu_dist.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # ganqp_cli from where this imports it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", str(script), str(out), a.dev]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0 or not out.is_file():
        row("2 ranks, 1 GPU (gloo)", "torchrun", f"failed: {done.stderr[-400:]}", False)
        return
    two = torch.load(out, weights_only=True)
    for case, got in two.items():
        if "error" in got:
            row("2 ranks, 1 GPU (gloo)", case, f"raised {got['error']}", False)
            continue
        one = gpu_dist.one_process(case, torch.device(a.dev))
        # per phase, over the whole gradient vector: a bias before BatchNorm has a zero
        # gradient up to rounding, so its own relative difference means nothing
        worst = max(float((flat(got["grads"][k]) - flat(one[k])).norm()
                          / flat(one[k]).norm().clamp_min(1e-30)) for k in one)
        row("2 ranks, 1 GPU (gloo)", case,
            f"gradients against 1 process: relative difference {worst:.1e}; ranks "
            f"identical after {gpu_dist.ITERS[torch.device(a.dev).type] + 2} iterations; "
            f"{got['s_per_it'] * 1e3:.1f} ms/iteration",
            worst < 1e-3, max_rel_grad_diff=worst, s_per_it=got["s_per_it"])


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten().double() for t in tensors])


def check_objectives(a: argparse.Namespace, work: Path, amp: str, deadline: float) -> None:
    names = objectives() if a.objectives == "all" else a.objectives.split(",")
    base = [f"device={a.device}", f"res={a.res}", f"train.iters={a.iters}",
            f"train.log_every={max(1, a.iters // 5)}", "train.sample_every=0",
            "train.ckpt_every=0", "train.workers=0", "train.sample_n=4", "train.compile=false"]
    if a.cpu_smoke:
        base += ["arch.width=0.125", "train.batch_size=8"]
    for name in names:
        if time.time() > deadline:
            row(f"objective {name}", amp, "not run: past the time budget", None)
            continue
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
                           f"{k} n/a" for k in ("d_loss", "g_loss"))
        row(f"objective {name}", f"{amp}, {a.iters} it, {a.res} px",
            f"exit {code}, losses {'finite' if finite else 'NOT finite'}: {losses}, skipped "
            f"{int(last.get('skipped_steps') or 0)}, {time.time() - t0:.0f} s", finite)


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


def check_fid(a: argparse.Namespace) -> None:
    """The same uint8 images (digits as references, an untrained generator's as samples)
    through the digits extractor on the GPU and on the CPU."""
    from ganqp_cli.data import Digits
    from ganqp_cli.metrics.extractors import make_extractor
    from ganqp_cli.metrics.features import Source, extract
    from ganqp_cli.metrics.frechet import frechet_distance
    from ganqp_cli.metrics.stats import Stats
    from ganqp_cli.networks import QPArch
    data = Digits(a.res)
    real = torch.stack([data.load(i) for i in range(min(len(data), a.fid_n))])
    torch.manual_seed(0)
    G = QPArch(width=0.25).generator(tuple(data.shape)).eval()
    with torch.no_grad():
        fake = ((G(torch.randn(a.fid_n, G.z_dim)).clamp(-1, 1) + 1) * 127.5).round().byte()

    def features(images: torch.Tensor, dev: torch.device):
        src = Source(images.shape[0], "check images", batch=lambda lo, hi: images[lo:hi])
        return extract(src, make_extractor("digits", None, None, dev), batch=100,
                       workers=1).features

    devices = [torch.device(a.dev), torch.device("cpu")]
    fids = [frechet_distance(Stats.of(features(real, d)), Stats.of(features(fake, d)))
            for d in devices]
    rel = abs(fids[0] - fids[1]) / max(abs(fids[1]), 1e-12)
    row(f"FID {devices[0].type} vs cpu", f"digits extractor, {a.fid_n} images",
        f"{fids[0]:.6g} vs {fids[1]:.6g}, relative difference {rel:.2e}", rel < 1e-3)


def check_resume(a: argparse.Namespace, work: Path) -> None:
    args = [f"device={a.device}", f"res={a.res}", "train.deterministic=true",
            "train.sample_every=0", "train.ckpt_every=3", "train.workers=0",
            "train.sample_n=4", "train.log_every=1", "train.amp=off", "train.compile=false"]
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
    row("resume exactness", f"3 + 3 vs 6 it, {a.res} px, fp32, deterministic",
        "bitwise equal (models, EMA)" if worst == 0 else f"max abs difference {worst:.3e}",
        worst == 0)


def table(total_s: float, dev: str) -> str:
    head = ("check", "setting", "result", "ok")
    cells = [tuple(r[k] for k in head) for r in ROWS]
    lines = [f"gpu_check on {dev}, torch {torch.__version__}, {total_s:.0f} s", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cell) + " |" for cell in cells]
    lines += ["", "What this table cannot show:", ""] + [f"- {n}" for n in CANNOT_SHOW]
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.md/.json")
    p.add_argument("--cpu-smoke", action="store_true", help="every row, tiny, on the CPU")
    p.add_argument("--objectives", default=None, help="comma list or 'all' (the default; "
                   "--cpu-smoke: gan-qp,wgan-gp)")
    p.add_argument("--skip", default="", help="comma list of: speed, dist, objectives, "
                   "spectral, fid, resume")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="rows that would start later are not run (the total stays <8 min)")
    a = p.parse_args()
    smoke = a.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; use --cpu-smoke for the reduced "
                         "CPU run.")
    # a.device: the config's `device=`; a.dev: a torch device with its index (what
    # torch.cuda.set_device wants: the loop's device_for gives one too)
    a.device, a.dev = ("cpu", "cpu") if smoke else ("cuda", "cuda:0")
    a.objectives = a.objectives or ("gan-qp,wgan-gp" if smoke else "all")
    a.res, a.iters, a.fid_n = (16, 2, 64) if smoke else (64, 20, 1000)
    a.speed_res = [16] if smoke else [128, 256]
    a.width, a.batch = (0.125, 4) if smoke else (1.0, 64)
    a.warmup, a.timed = (1, 1) if smoke else (5, 20)
    a.images, a.data_workers, a.data_iters = (8, 2, 4) if smoke else (512, 8, 100)
    a.prepare_workers = 0 if smoke else 8  # decoding processes (0: in this one)
    return a


def main() -> None:
    a = parse()
    a.out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, a.skip.split(",")))
    t0 = time.time()
    RUN.update(out=a.out, start=t0, device="cpu (smoke)" if a.cpu_smoke
               else torch.cuda.get_device_name())
    deadline = t0 + a.budget_s
    with tempfile.TemporaryDirectory(prefix="ganqp_gpu_check_") as tmp:
        work = Path(tmp)
        steps = [("speed", lambda: check_speed(a, work, deadline)),
                 ("dist", lambda: check_dist(a, work)),
                 ("objectives", lambda: check_objectives(a, work, "bf16", deadline)),
                 ("spectral", lambda: check_spectral(a)), ("fid", lambda: check_fid(a)),
                 ("resume", lambda: check_resume(a, work)),
                 ("objectives", lambda: check_objectives(a, work, "fp16", deadline))]
        for name, step in steps:
            if name in skip:
                continue
            if time.time() > deadline:
                row(name, "", "not run: past the time budget", None)
                continue
            print(f"# {name} ({time.time() - t0:.0f} s; CPU {time.process_time():.0f} s)",
                  flush=True)
            try:
                step()
            except Exception as err:  # noqa: BLE001 - one failed check must not hide the rest
                row(name, "", f"raised {type(err).__name__}: {str(err)[:300]}", False)
        if any(r["ok"] == "FAIL" for r in ROWS) and (work / "train.log").is_file():
            print((work / "train.log").read_text()[-3000:])
    print("\n" + save(done=True))
    sys.exit(1 if any(r["ok"] == "FAIL" for r in ROWS) else 0)


if __name__ == "__main__":
    main()
