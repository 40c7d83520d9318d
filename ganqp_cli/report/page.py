"""The report as one self-contained HTML page: the table per block, every run's row, the
curves, the configuration keys that differ, each run's command line and its sample grids.

Nothing is fetched when the page opens: styles inline, figures inline SVG, grids data:
URIs, system fonts. One small inline script opens the collapsed sections before printing,
so a printout holds everything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

from ganqp_cli.report import differ, figures, grids, stats, table
from ganqp_cli.report.runs import Run
from ganqp_cli.report.table import Row, Spread

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1a1a1a;background:#fff;margin:0 auto;max-width:1400px;padding:0 18px 40px}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;
 border-bottom:1px solid #ccc;padding-bottom:3px}h3{font-size:15px;margin:18px 0 6px}
.meta,.note{color:#555}.note{font-size:12.5px;max-width:1000px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d4d4d4;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;
 white-space:nowrap}tr.failed td{background:#fdecea}tr.running td,tr.interrupted td{
 background:#fff8e1}.sw{display:inline-block;width:10px;height:10px;margin-right:5px;
 border-radius:2px;vertical-align:baseline}code{font-size:11.5px;word-break:break-all}
.legend span.item{margin-right:14px;white-space:nowrap;font-size:12.5px}
.figrow{display:flex;flex-wrap:wrap;gap:6px;margin:2px 0 10px;break-inside:avoid}
svg.plot{background:#fff;font-size:10px;font-family:inherit}svg.plot text{fill:#333}
svg.plot .title,svg.plot .label{font-size:11px}svg.plot .frame{fill:none;stroke:#999}
svg.plot .grid{stroke:#e6e6e6}svg.plot polyline{stroke-width:1.4;stroke-opacity:.85}
svg.plot .empty{fill:#888}.run{border-top:1px solid #e2e2e2;padding:8px 0;
 break-inside:avoid}.grids{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#444}img.grid,img.thumb{image-rendering:pixelated;
 border:1px solid #ccc;max-width:100%;height:auto}.strip{display:flex;flex-wrap:wrap;gap:4px}
.strip figure{text-align:center}.missing{color:#a33}summary{cursor:pointer;font-weight:600}
td.nw code{word-break:normal;white-space:nowrap}
@media print{body{max-width:none;font-size:10pt}.scroll{overflow:visible}
 table{font-size:8pt}h2{break-before:auto}.run,.figrow,tr{break-inside:avoid}}
"""
PRINT_SCRIPT = ("<script>addEventListener('beforeprint',function(){document."
                "querySelectorAll('details').forEach(function(d){d.open=true})})</script>")


# Beyond this many runs the grids are shown smaller and as JPEG (unless set): a report of a
# thousand runs stays tens of megabytes, not hundreds (scripts/bench_report.py).
MANY = 100


@dataclass
class Settings:
    grid_px: int | None = None   # the longer side of the best and last grids, at most
    strip: int | None = None     # grids in each run's strip over training
    strip_px: int | None = None  # the longer side of each of them
    jpeg: bool | None = None     # grids re-encoded as JPEG
    fig_width: int = 330
    fig_height: int = 220

    def resolved(self, runs: int) -> Settings:
        """Unset values chosen for a report of `runs` runs."""
        many = runs > MANY

        def pick(v: object, few: object, lots: object) -> object:
            return v if v is not None else lots if many else few
        return Settings(pick(self.grid_px, 384, 160), pick(self.strip, 8, 4),
                        pick(self.strip_px, 96, 64), pick(self.jpeg, False, True),
                        self.fig_width, self.fig_height)


def num(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}g}"


def spread(s: Spread, digits: int = 4) -> str:
    if s.mean is None:
        return "–"
    return num(s.mean, digits) + (f" ± {num(s.std, 2)}" if s.std is not None else "")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def swatch(i: int) -> str:
    return f'<span class="sw" style="background:{figures.color(i)}"></span>'


def _cells(values: list[str], numeric: bool = True) -> str:
    cls = ' class="n"' if numeric else ""
    return "".join(f"<td{cls}>{v}</td>" for v in values)


def block_title(block: tuple[str, int, str]) -> str:
    data, res, extractor = block
    return f"{escape(data)}, {res} px, FID extractor <code>{escape(extractor)}</code>"


def config_table(rows: list[Row]) -> str:
    """One row per configuration: mean ± std over its seeds."""
    metrics = table.metric_columns(rows)
    pres = table.paper_resolution(rows[0].data, rows[0].res)
    head = (["configuration", "runs", "iterations done / planned",
             "best FID (mean ± std)", "iteration of the best", "final FID"]
            + [f"{escape(k)} at the best FID" for k in metrics]
            + ["s / iteration", "time vs gan-qp", "images / s", "wall time",
               f"paper FID (CelebA-HQ {pres})", "paper time"])
    out = ['<div class="scroll"><table class="configs"><tr>'
           + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        done = sorted({f"{d}/{p}" for d, p in map(stats.done_of_planned, r.runs)})
        p = r.paper or {}
        pt = p.get("relative_time_per_iteration")
        out.append(
            f'<tr data-config="{escape(r.label)}"><td>{swatch(r.index)}{escape(r.label)}</td>'
            f"<td>{escape(table.status_text(r))}</td>"
            + _cells([", ".join(done), spread(r.best_fid),
                      ", ".join(str(it) for it, _ in r.bests) or "–", spread(r.final_fid)]
                     + [spread(r.at_best(k)) for k in metrics]
                     + [spread(r.sec_per_iter, 3),
                        "–" if r.rel_time is None else f"{r.rel_time:.2f}x",
                        spread(r.img_per_s, 3), duration(r.wall_s.mean),
                        num(p.get("fid")), "–" if pt is None else f"{pt:g}x"]) + "</tr>")
    out.append("</table></div>")
    note = (f"{table.note(rows[0].extractor)} Best FID: each seed's lowest FID during training "
            "(its iteration listed per seed); the other metrics are each seed's values in the "
            "evaluation of its best FID; mean ± sample standard deviation over seeds. "
            "s / iteration: training time (FID evaluations, samples and checkpoints left "
            "out); wall time: the whole run, averaged over seeds.")
    out.append(f'<p class="note">{escape(note)}</p>')
    return "".join(out)


def status_cell(run: Run, now: float) -> str:
    text = run.status
    if run.reason:
        text += f": {run.reason}"
    if run.status == "running" and run.updated:
        text += f" (status updated {duration(now - float(run.updated))} ago)"
    return escape(text)


def runs_table(rows: list[Row], now: float) -> str:
    head = ["run", "configuration", "seed", "status", "iterations", "best FID (iteration)",
            "final FID", "s / iteration", "images / s", "wall time", "missing or partial"]
    out = ['<div class="scroll"><table class="runs"><tr>'
           + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        for run in r.runs:
            b, f = stats.best(run), stats.final(run)
            d, p = stats.done_of_planned(run)
            out.append(
                f'<tr class="{escape(run.status.replace(" ", "-"))}" '
                f'data-run="{escape(run.key)}"><td><code>{escape(run.key)}</code></td>'
                f"<td>{swatch(r.index)}{escape(r.label)}</td><td class=\"n\">{run.seed}</td>"
                f"<td>{status_cell(run, now)}</td>"
                + _cells([f"{d}/{p}", f"{num(b[1])} ({b[0]})" if b else "–",
                          num(f[1]) if f else "–", num(stats.seconds_per_iter(run), 3),
                          num(stats.images_per_second(run), 3),
                          duration(stats.wall_seconds(run))])
                + f'<td class="missing">{escape("; ".join(run.notes))}</td></tr>')
    out.append("</table></div>")
    return "".join(out)


def legend(rows: list[Row]) -> str:
    items = "".join(f'<span class="item">{swatch(r.index)}{escape(r.label)}</span>'
                    for r in rows)
    return f'<p class="legend">{items}</p>'


def curves(rows: list[Row], s: Settings) -> str:
    figs = figures.figures(rows, s.fig_width, s.fig_height)
    if not figs:
        return '<p class="missing">no metrics logged yet</p>'
    out = [legend(rows)]
    more = []
    for f in figs:
        row = (f'<h3 id="curve-{escape(f.key)}">{escape(f.key)}</h3>'
               f'<div class="figrow" data-key="{escape(f.key)}">{"".join(f.svgs)}</div>')
        (out if f.source == "eval" or f.key in figures.FIRST else more).append(row)
    if more:
        out.append(f"<details><summary>{len(more)} more curves of metrics.jsonl "
                   "(the objective's statistics, regularisers, counters)</summary>"
                   + "".join(more) + "</details>")
    return "".join(out)


def _figure(shown: grids.Shown | None, caption: str, cls: str = "grid") -> str:
    if shown is None:
        return f'<figure><figcaption class="missing">{caption}: no grid yet</figcaption></figure>'
    if shown.uri is None:
        return f'<figure><figcaption class="missing">{escape(shown.note)}</figcaption></figure>'
    return (f'<figure><img class="{cls}" src="{shown.uri}" width="{shown.width}" '
            f'alt="{caption}">'
            f"<figcaption>{caption}: {escape(shown.note)}</figcaption></figure>")


def samples(rows: list[Row], s: Settings) -> str:
    out = []
    for r in rows:
        for run in r.runs:
            best, last, strip = grids.run_grids(run, s.grid_px, s.strip, s.strip_px, s.jpeg)
            thumbs = "".join(_figure(g, "iteration", "thumb") for g in strip)
            same = best is not None and last is not None and best.it == last.it
            main = (_figure(last, "at the best FID and the last") if same else
                    _figure(best, "at the best FID") + _figure(last, "last"))
            out.append(
                f'<div class="run" data-run="{escape(run.key)}"><h3>{swatch(r.index)}'
                f"{escape(r.label)}, seed {run.seed} <code>{escape(run.key)}</code></h3>"
                f'<div class="grids">{main}</div>'
                + (f'<p class="meta">over training:</p><div class="strip">{thumbs}</div>'
                   if len(strip) > 2 else "") + "</div>")
    return "".join(out)


def keys_section(runs: list[Run]) -> str:
    keys, values = differ.differing(runs)
    out = []
    if keys:
        out.append('<div class="scroll"><table class="keys"><tr><th>run</th>'
                   + "".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr>")
        for run, v in zip(runs, values, strict=True):
            cells = "".join(f"<td>{escape(v[k])}</td>" for k in keys)
            out.append(f'<tr data-run="{escape(run.key)}"><td class="nw"><code>'
                       f"{escape(run.key)}</code></td>{cells}</tr>")
        out.append("</table></div>")
    else:
        out.append('<p class="meta">none: every run has the same configuration.</p>')
    out.append("<h3>Command lines</h3><p class=\"note\">Each run's own overrides; run again, "
               "the same command resumes it from its last checkpoint.</p><ul class=\"cmds\">")
    out += [f'<li data-run="{escape(r.key)}"><code>{escape(r.command)}</code></li>' for r in runs]
    out.append("</ul>")
    return "".join(out)


def page(root: Path, rows: list[Row], s: Settings | None = None) -> str:
    now = time.time()
    runs = [run for r in rows for run in r.runs]
    s = (s or Settings()).resolved(len(runs))
    counts = {k: sum(run.status == k for run in runs) for k in table.STATUSES}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             f"<title>ganqp report: {escape(root.name or str(root))}</title>",
             f"<style>{CSS}</style>{PRINT_SCRIPT}</head><body>",
             f"<h1>ganqp report: <code>{escape(str(root))}</code></h1>",
             f'<p class="meta">{len(runs)} run(s) in {len(rows)} configuration(s): {summary}. '
             f"Written {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))} by "
             "<code>ganqp report</code>.</p>"]
    shared = table.shared_overrides(runs)
    if shared:
        parts.append('<p class="meta">Overrides every run was given: '
                     f"<code>{escape(' '.join(shared))}</code></p>")
    by_block = table.blocks(rows)
    parts.append("<h2>The table</h2>")
    for block, rs in by_block.items():
        parts.append(f"<h3>{block_title(block)}</h3>{config_table(rs)}")
    parts.append(f"<h2>Runs</h2>{runs_table(rows, now)}")
    parts.append("<h2>Curves</h2>")
    for block, rs in by_block.items():
        parts.append(f"<section class=\"block\"><h3>{block_title(block)}</h3>"
                     f"{curves(rs, s)}</section>")
    parts.append(f"<h2>Configuration keys that differ</h2>{keys_section(runs)}")
    how = (f"Grids at most {s.grid_px} px, a strip of {s.strip} at {s.strip_px} px"
           + (", as JPEG" if s.jpeg else "") + " (grid_px=, strip=, strip_px=, jpeg= set them).")
    parts.append(f'<h2>Samples</h2><p class="meta">{how}</p>{samples(rows, s)}</body></html>')
    return "\n".join(parts)
