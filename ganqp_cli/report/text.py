"""The table as Markdown (fid_table.md) and CSV (fid_table.csv), for scripts/fid_table.py:
one Markdown table per block and set of overrides, the paper's columns beside ours."""

from __future__ import annotations

import csv
from pathlib import Path

from ganqp_cli.report.table import Row, Spread, note, paper_resolution, status_text

# Metrics beyond FID shown in pairs, each pair a column when any row of a table logged it.
PAIRS = (("precision", "recall"), ("density", "coverage"))


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def mean_std(s: Spread, fmt: str) -> str:
    return _f(s.mean, fmt) + (f" ± {format(s.std, fmt)}" if s.std is not None else "")


def _pair_columns(rows: list[Row]) -> list[tuple[str, str]]:
    return [p for p in PAIRS if any(r.at_best(p[0]).mean is not None for r in rows)]


def _line(r: Row, pairs: list[tuple[str, str]]) -> str:
    bests = r.bests
    fid = mean_std(r.best_fid, ".2f")
    if bests and len(bests) < len(r.runs):
        fid += f" ({len(bests)} of {len(r.runs)} seeds)"
    its = ", ".join(str(i) for i, _ in bests) or "–"
    p = r.paper or {}
    pt = p.get("relative_time_per_iteration")
    cells = "".join(f"| {mean_std(r.at_best(a), '.3f')} / {mean_std(r.at_best(b), '.3f')} "
                    for a, b in pairs)
    return (f"| {r.objective} | {fid} | {its} {cells}| {_f(r.sec_per_iter.mean, '.4f')} "
            f"| {_f(r.rel_time, '.2f')}{'x' if r.rel_time is not None else ''} "
            f"| {status_text(r)} | {_f(p.get('fid'), 'g')} "
            f"| {_f(pt, 'g')}{'x' if pt is not None else ''} |")


def markdown(rows: list[Row]) -> str:
    lines: list[str] = []
    tables: dict[tuple, list[Row]] = {}
    for r in rows:
        tables.setdefault((*r.block, r.variant), []).append(r)
    for (data, res, extractor, variant), rs in tables.items():
        title = f"### {data}, {res} px, FID extractor `{extractor}`"
        pairs = _pair_columns(rs)
        extra = "".join(f"| {a} / {b} at the best FID " for a, b in pairs)
        lines += [title + (f", overrides `{variant}`" if variant else ""), "",
                  "| objective | best FID (mean ± std over seeds) | iteration of the best "
                  f"{extra}| s / iteration | time vs GAN-QP | jobs "
                  f"| paper FID (CelebA-HQ {paper_resolution(data, res)}, Keras Inception) "
                  "| paper time |",
                  "|---|---|---|" + "---|" * len(pairs) + "---|---|---|---|---|"]
        lines += [_line(r, pairs) for r in rs]
        lines += ["", f"*{note(extractor)}*", ""]
    return "\n".join(lines)


CSV_FIELDS = ["data", "res", "extractor", "objective", "variant", "jobs", "done", "running",
              "failed", "not_started", "seeds_with_fid", "fid_mean", "fid_std", "best_iters",
              "sec_per_iter", "rel_time_vs_gan_qp", "paper_resolution", "paper_fid",
              "paper_rel_time", "precision_mean", "precision_std", "recall_mean", "recall_std",
              "density_mean", "density_std", "coverage_mean", "coverage_std"]
# Appended after the fields above (which keep their place for scripts reading them).
LATER_FIELDS = ["interrupted", "final_fid_mean", "final_fid_std", "img_per_s", "wall_s"]


def write_csv(rows: list[Row], path: Path) -> None:
    """One line per configuration; every metric logged gets its `_mean` and `_std`."""
    known = {f.rsplit("_", 1)[0] for f in CSV_FIELDS if f.endswith(("_mean", "_std"))}
    more = [k for r in rows for k in r.metrics if k not in known and k != "fid"]
    more = list(dict.fromkeys(more))
    fields = CSV_FIELDS + LATER_FIELDS + [f"{k}_{s}" for k in more for s in ("mean", "std")]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            p = r.paper or {}
            at = {f"{k}_{s}": v for k in ("precision", "recall", "density", "coverage", *more)
                  for s, v in zip(("mean", "std"), (r.at_best(k).mean, r.at_best(k).std),
                                  strict=True)}
            w.writerow({"data": r.data, "res": r.res, "extractor": r.extractor,
                        "objective": r.objective, "variant": r.variant, "jobs": len(r.runs),
                        "done": r.count("done"), "running": r.count("running"),
                        "failed": r.count("failed"), "not_started": r.count("not started"),
                        "interrupted": r.count("interrupted"),
                        "seeds_with_fid": len(r.bests), "fid_mean": r.best_fid.mean,
                        "fid_std": r.best_fid.std,
                        "best_iters": ";".join(str(i) for i, _ in r.bests),
                        "sec_per_iter": r.sec_per_iter.mean, "rel_time_vs_gan_qp": r.rel_time,
                        "paper_resolution": p.get("resolution"), "paper_fid": p.get("fid"),
                        "paper_rel_time": p.get("relative_time_per_iteration"),
                        "final_fid_mean": r.final_fid.mean, "final_fid_std": r.final_fid.std,
                        "img_per_s": r.img_per_s.mean, "wall_s": r.wall_s.mean, **at})
