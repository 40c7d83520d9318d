"""`ganqp report runs=DIR [out=FILE.html]`: every run at or under DIR on one page.

Checked before anything is written: DIR is a folder holding at least one run of `ganqp
train`, and `out` (default DIR/report.html) is an .html file that can be written. The page
is written atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from ganqp_cli import checks
from ganqp_cli.atomic import write_atomic
from ganqp_cli.config import check_missing
from ganqp_cli.errors import UserError
from ganqp_cli.report.page import Settings, page
from ganqp_cli.report.runs import Run, find_runs
from ganqp_cli.report.table import summarize


def validate_report(cfg: DictConfig) -> tuple[Path, Path, Settings]:
    check_missing(cfg, {"runs": "the run or sweep to report on, e.g. "
                                "runs=outputs/multirun/2026-01-01/12-00-00"})
    root = checks.existing_dir("runs", cfg.runs, "a run directory, a sweep (outputs/multirun/"
                               "DATE/TIME) or a folder holding runs")
    out = checks.output_file("out", cfg.out if cfg.out is not None else root / "report.html",
                             (".html", ".htm"))
    s = Settings(grid_px=checks.whole("grid_px", cfg.grid_px, 8, allow_none=True),
                 strip=checks.whole("strip", cfg.strip, 0, allow_none=True),
                 strip_px=checks.whole("strip_px", cfg.strip_px, 8, allow_none=True),
                 jpeg=None if cfg.jpeg is None else checks.boolean("jpeg", cfg.jpeg))
    return root, out, s


def no_runs(root: Path) -> UserError:
    return UserError(f"runs={root} holds no run of `ganqp train` (a folder with "
                     ".hydra/config.yaml, at any depth): pass a run directory such as "
                     "outputs/2026-01-01/12-00-00, a sweep such as "
                     "outputs/multirun/2026-01-01/12-00-00, or a folder of either.")


def report_command(cfg: DictConfig) -> dict[str, object]:
    root, out, settings = validate_report(cfg)
    t0 = time.perf_counter()
    runs: list[Run] = find_runs(root)
    if not runs:
        raise no_runs(root)
    rows = summarize(runs)
    html = page(root, rows, settings).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda f: f.write(html))
    partial = sum(bool(r.notes) or r.status != "done" for r in runs)
    print(f"ganqp report: {len(runs)} run(s) in {len(rows)} configuration(s)"
          + (f", {partial} of them partial (the page says what is missing)" if partial else "")
          + f"; wrote {out} ({len(html) / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    return {"out": str(out), "runs": len(runs)}
