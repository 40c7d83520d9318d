"""How big and how slow a report of many runs is: `ganqp report` on synthetic runs.

    python scripts/bench_report.py [--runs 1000] [--rows 400] [--evals 20] [--grids 20]
                                   [--pairs 3] [--browser]

Writes --runs run directories shaped like real ones (a config with interpolations,
metrics.jsonl of --rows rows, fid.jsonl of --evals evaluations, --grids 8x8 sample grids
of 32 px digits-like tiles), 10 objectives x 10 settings x seeds, then measures the page:
its size (and what the grids and the figures take of it) and the time to write it. The
reference, measured in the same run and alternated with it (scripts/paired.py): reading
every file the report reads, as bytes (what any tool reading the runs pays). --browser
also times headless Chromium loading the page and reports its DOM's size.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ganqp_cli.report.page import Settings, page
from ganqp_cli.report.runs import find_runs
from ganqp_cli.report.table import summarize

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/paired.py, from anywhere
from paired import Spread, load_average, measure_pairs  # noqa: E402

OBJECTIVES = ["gan-qp", "gan-qp-l2", "wgan-gp", "wgan-sn", "sgan-sn", "lsgan-sn", "hinge-sn",
              "wgan-div", "fgan-kl", "fgan-js"]


def grid(rng: np.random.Generator) -> Image.Image:
    """An 8x8 grid of 32 px tiles with 2 px padding, each a blurred blob (digit-like)."""
    tiles = rng.random((64, 8, 8)) ** 3
    tiles = np.kron(tiles, np.ones((4, 4)))  # 32 px, blocky as upsampled digits are
    out = np.zeros((8 * 34 + 2, 8 * 34 + 2))
    for k, t in enumerate(tiles):
        r, c = divmod(k, 8)
        out[2 + 34 * r:34 + 34 * r, 2 + 34 * c:34 + 34 * c] = t
    return Image.fromarray((out * 255).astype(np.uint8), "L")


def make_runs(root: Path, n: int, rows: int, evals: int, grids: int) -> None:
    rng = np.random.default_rng(0)
    pool = [grid(rng) for _ in range(16)]
    seeds = max(1, n // 100)
    for i in range(n):
        obj, r1, seed = OBJECTIVES[i % 10], (i // 10) % 10, i // 100 % seeds
        over = [f"objective={obj}", f"reg.r1={r1 / 10}", f"seed={seed}"]
        run = root / ",".join(over) / f"{i // 100}" if i >= 100 * seeds else root / ",".join(over)
        (run / ".hydra").mkdir(parents=True)
        cfg = {"res": "${oc.select:data.preset.res,128}", "seed": seed,
               "objective": {"name": obj, "d_steps": 2, "lam": 10.0},
               "reg": {"r1": r1 / 10}, "data": {"name": "digits", "preset": {"res": 32}},
               "arch": {"name": "gan-qp", "width": 0.25, "z_dim": 128},
               "train": {"iters": rows * 50, "batch_size": 64, "fid_every": 1000,
                         "log_every": 50}, "fid": {"extractor": "digits"}}
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(over))
        loss = rng.normal(size=rows).cumsum() * 0.01
        (run / "metrics.jsonl").write_text("".join(json.dumps(
            {"iter": 50 * (k + 1), "d_loss": float(loss[k]), "g_loss": float(-loss[k]),
             "dT": 1.0, "dist": 0.5, "lip": 0.9, "it_per_s": 10.0, "img_per_s": 1920.0,
             "elapsed_s": 5.0 * (k + 1), "skipped_steps": 0.0, "data_skipped": 0.0}) + "\n"
            for k in range(rows)))
        (run / "fid.jsonl").write_text("".join(json.dumps(
            {"iter": rows * 50 * (k + 1) // evals, "fid": float(5 / (k + 1) + rng.random()),
             "kid": 0.01, "kid_std": 0.001, "precision": 0.5, "recall": 0.5, "density": 0.3,
             "coverage": 0.4, "n": 2000, "extractor": "digits", "dims": 64}) + "\n"
            for k in range(evals)))
        (run / "samples").mkdir()
        for k in range(grids):
            pool[(i + k) % len(pool)].save(run / "samples" /
                                           f"iter_{rows * 50 * (k + 1) // grids:07d}.png")
        (run / "status.json").write_text(json.dumps({"status": "done", "iter": rows * 50,
                                                     "iters": rows * 50, "time": 0.0}))


def read_bytes(root: Path) -> int:
    """The reference: every file the report reads, read as bytes."""
    return sum(p.stat().st_size and len(p.read_bytes()) for p in root.rglob("*")
               if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--evals", type=int, default=20)
    ap.add_argument("--grids", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--browser", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ganqp-bench-report-"))
    try:
        t = time.perf_counter()
        make_runs(tmp / "sweep", a.runs, a.rows, a.evals, a.grids)
        print(f"made {a.runs} runs in {time.perf_counter() - t:.0f} s; {load_average()}")
        html, cpu = "", []

        def ours() -> float:
            nonlocal html
            t0, c0 = time.perf_counter(), time.process_time()
            html = page(tmp / "sweep", summarize(find_runs(tmp / "sweep")), Settings())
            (tmp / "report.html").write_text(html)
            cpu.append(time.process_time() - c0)
            return time.perf_counter() - t0

        def reference() -> float:
            t0 = time.perf_counter()
            read_bytes(tmp / "sweep")
            return time.perf_counter() - t0

        times: list[float] = []
        ratios = measure_pairs(lambda: times.append(ours()) or times[-1], reference, a.pairs)
        size = len(html.encode())
        uris = sum(len(m) for m in re.findall(r'src="data:[^"]*"', html))
        svgs = sum(len(m) for m in re.findall(r"<svg.*?</svg>", html, re.S))
        disk = sum(p.stat().st_size for p in (tmp / "sweep").rglob("*") if p.is_file())
        print(f"report of {a.runs} runs: {size / 1e6:.1f} MB ({size / a.runs / 1e3:.0f} kB "
              f"per run; grids {uris / 1e6:.1f} MB, figures {svgs / 1e6:.1f} MB); the runs' "
              f"files: {disk / 1e6:.1f} MB")
        print(Spread.of(times).line("seconds to write the report", ".1f"))
        print(Spread.of(cpu).line("CPU seconds to write the report", ".1f"))
        print(Spread.of(ratios).line("report time / reading the runs' files", ".1f"))
        if a.browser:
            browser(tmp / "report.html")
        print(load_average())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def browser(html: Path) -> None:
    exe = shutil.which("chromium")
    if exe is None:
        print("--browser: chromium is not installed")
        return
    t0 = time.perf_counter()
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={html.parent / 'profile'}",
                          "--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=600).stdout
    print(f"chromium loaded and serialised the page in {time.perf_counter() - t0:.1f} s "
          f"(DOM {len(dom) / 1e6:.1f} MB)")


if __name__ == "__main__":
    sys.exit(main())
