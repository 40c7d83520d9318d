"""Turn a `ganqp train -m` sweep into the paper's FID table, ours beside theirs, and FID curves.

    python scripts/fid_table.py outputs/multirun/2025-01-01/12-00-00 [--out DIR] [--no-plot]

A thin entry to the table `ganqp report` shows (ganqp_cli/report/table.py, text.py): jobs
that differ only in `seed` form one row, with each seed's best FID (mean and sample std over
the seeds) and its iteration, precision / recall and density / coverage at it, seconds per
iteration and relative to the gan-qp row, the jobs' status, and the paper's numbers.
Writes fid_table.md, fid_table.csv and fid_curves.svg (FID against iterations, one panel
per data set and resolution) into --out (default: the sweep directory) and prints the
Markdown. `ganqp report runs=SWEEP` shows the same table with every curve and the grids.
"""

from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path

from ganqp_cli.report import figures, stats, svg
from ganqp_cli.report.runs import find_runs
from ganqp_cli.report.table import Row, blocks, summarize
from ganqp_cli.report.text import markdown, write_csv


def curves_svg(rows: list[Row]) -> str | None:
    """FID against iterations, one panel per block (one line per job), as one SVG file."""
    panels = []
    for (data, res, extractor), rs in blocks(rows).items():
        series = [svg.Series(f"{r.label}, seed {run.seed}", figures.color(r.index),
                             [(float(i), f) for i, f in stats.series(run.evals, "fid")],
                             key=run.key) for r in rs for run in r.runs]
        if any(s.points for s in series):
            panels.append(svg.plot(series, "generator iteration", f"FID ({extractor})", 480,
                                   300, title=f"{data} {res} px"))
    if not panels:
        return None
    legend = [f'<text x="{500 * len(panels) + 10}" y="{20 + 16 * r.index}" '
              f'fill="{figures.color(r.index)}">{escape(r.label)}</text>' for r in rows]
    body = "".join(f'<g transform="translate({500 * i} 0)">{p}</g>'
                   for i, p in enumerate(panels))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{500 * len(panels) + 240}" '
            f'height="{max(310, 30 + 16 * len(rows))}" font-family="sans-serif" '
            f'font-size="11">{body}{"".join(legend)}</svg>')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path, help="a `ganqp train -m` sweep directory")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: sweep)")
    ap.add_argument("--no-plot", action="store_true", help="skip fid_curves.svg")
    a = ap.parse_args(argv)
    if not a.sweep.is_dir():
        print(f"fid_table: {a.sweep} is not a directory (pass a sweep directory such as "
              "outputs/multirun/DATE/TIME)", file=sys.stderr)
        return 2
    runs = find_runs(a.sweep)
    if not runs:
        print(f"fid_table: no job directories (with .hydra/config.yaml) under {a.sweep}",
              file=sys.stderr)
        return 2
    rows = summarize(runs)
    out = a.out or a.sweep
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    (out / "fid_table.md").write_text(text + "\n")
    write_csv(rows, out / "fid_table.csv")
    print(text)
    written = [out / "fid_table.md", out / "fid_table.csv"]
    plot = None if a.no_plot else curves_svg(rows)
    if plot is not None:
        (out / "fid_curves.svg").write_text(plot)
        written.append(out / "fid_curves.svg")
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
