"""`ganqp report` on run directories written by hand (tests/report_runs.py): the table's
numbers over seeds, exactly; runs in progress (a torn last line, no fid.jsonl, no grid, no
status.json) reported with what they lack; a metric no code knows shown like the others;
grids embedded pixel for pixel; the SVG axes; bad input."""

from __future__ import annotations

import base64
import io
import json
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganqp_cli.report import grids, stats, svg
from ganqp_cli.report.runs import find_runs
from ganqp_cli.report.table import summarize
from tests.report_runs import make_job, write_grid

ROWS = {100: {"elapsed_s": 10.0, "img_per_s": 240.0}, 200: {"elapsed_s": 20.0, "img_per_s": 240.0},
        300: {"elapsed_s": 5.0, "img_per_s": 120.0}}  # 300: a resumed process, its clock anew


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    s = tmp_path / "sweep"
    make_job(s, "gan-qp", 0, "done", [(100, 50.0), (200, 30.0), (300, 35.0)],
             [(100, 10.0), (200, 10.0), (300, 5.0)], rows=ROWS, grids=(100, 200, 300),
             more={200: {"modes": 7, "acc": 0.5}, 300: {"modes": 8, "acc": 0.75}})
    make_job(s, "gan-qp", 1, "done", [(100, 40.0), (200, 34.0), (300, 33.0)],
             [(100, 5.0), (200, 5.0), (300, 5.0)], grids=(100, 300),
             more={300: {"modes": 9, "acc": 0.25}})
    make_job(s, "wgan-gp", 0, "failed", [(100, 45.0)], [(100, 2.0)], at=120,
             status_extra={"reason": "training diverged: 20 critic updates in a row"})
    return s


def report(cli, runs: Path, *args: str) -> str:
    r = cli("report", f"runs={runs}", *args)
    assert r.code == 0, r
    assert "ganqp report: " in r.out
    return (runs / "report.html").read_text()


def test_table_over_seeds_exactly(sweep):
    rows = summarize(find_runs(sweep))
    qp, wgan = rows
    assert (qp.label, [r.seed for r in qp.runs], wgan.label) == ("gan-qp", [0, 1], "wgan-gp")
    assert qp.best_fid.mean == statistics.fmean([30.0, 33.0])
    assert qp.best_fid.std == statistics.stdev([30.0, 33.0])
    assert qp.bests == [(200, 30.0), (300, 33.0)]
    assert (qp.final_fid.mean, qp.final_fid.std) == (34.0, statistics.stdev([35.0, 33.0]))
    # a metric no code knows, at each seed's best FID: seed 0 at 200, seed 1 at 300
    assert (qp.at_best("modes").mean, qp.at_best("acc").mean) == (8.0, 0.375)
    seed0 = qp.runs[0]
    assert stats.seconds_per_iter(seed0) == (10 + 10 + 20) / 300
    assert stats.images_per_second(seed0) == 24.0 / ((10 + 10 + 20) / 300)  # 120 / 5
    assert stats.wall_seconds(seed0) == 20.0 + 5.0  # the first process's 20 s, then 5 s
    assert stats.time_axis(seed0) == {100: 10.0, 200: 20.0, 300: 40.0}
    assert stats.image_axis(seed0)[300] == 300 * 24 / 1000
    assert qp.sec_per_iter.mean == statistics.fmean([40 / 300, 60 / 300])
    assert wgan.rel_time == 0.5 / qp.sec_per_iter.mean
    assert (wgan.runs[0].status, wgan.runs[0].reason) == (
        "failed", "training diverged: 20 critic updates in a row")


def test_page_holds_every_run_metric_and_reason(cli, sweep):
    html = report(cli, sweep)
    assert html.count('<tr class="done" data-run=') == 2
    assert html.count('<tr class="failed" data-run="experiment=digits-table,objective=wgan-gp,'
                      'seed=0">') == 1
    assert "failed: training diverged: 20 critic updates in a row" in html
    for key in ("modes", "acc"):  # new metrics: a column and a row of figures each
        assert f"<th>{key} at the best FID</th>" in html
        assert f'<div class="figrow" data-key="{key}">' in html
    assert ">8 ± 1.4<" in html  # modes at the best FID over the two seeds: 7 and 9
    assert "1/1 done" not in html and "2/2 done" in html and "0/1 done; 1 failed" in html
    assert "45" in html and "55.5" in html  # the paper's FIDs beside gan-qp and wgan-gp
    assert re.search(r"src=\"(https?:)?//", html) is None and "<link" not in html
    assert "ganqp train experiment=digits-table objective=wgan-gp seed=0 hydra.run.dir=" in html
    for svg_text in re.findall(r"<svg.*?</svg>", html, re.S):
        ET.fromstring(svg_text)  # every figure is well-formed XML


def test_runs_in_progress_say_what_they_lack(cli, tmp_path):
    s = tmp_path / "sweep"
    job = make_job(s, "gan-qp", 0, "running", [(100, 20.0)], [(100, 4.0), (200, 4.0)])
    with open(job / "metrics.jsonl", "a") as f:
        f.write('{"iter": 300, "d_loss": 0.1, "g_lo')  # being written
    (job / "fid.jsonl").unlink()
    bare = make_job(s, "wgan-gp", 0, None, [], [])
    for name in ("fid.jsonl", "metrics.jsonl"):
        (bare / name).unlink()
    grid = job / "samples" / "iter_0000200.png"
    write_grid(grid)
    grid.write_bytes(grid.read_bytes()[:40])  # a grid being written
    html = report(cli, s)
    runs = {r.objective: r for r in find_runs(s)}
    assert [row["iter"] for row in runs["gan-qp"].metrics] == [100, 200]
    assert runs["gan-qp"].notes == ["metrics.jsonl: its last line is incomplete (being "
                                    "written)", "no fid.jsonl yet"]
    assert runs["wgan-gp"].status == "not started"
    assert runs["wgan-gp"].notes == ["no status.json: not started yet", "no fid.jsonl yet",
                                     "no sample grid yet"]
    assert "iter_0000200.png could not be read (being written?)" in html
    assert "metrics.jsonl: its last line is incomplete (being written)" in html
    assert "no status.json: not started yet; no fid.jsonl yet; no sample grid yet" in html


def test_grids_best_last_and_strip_embedded_pixel_for_pixel(sweep):
    run = next(r for r in find_runs(sweep) if r.seed == 0)
    best, last, strip = grids.run_grids(run, side=72, strip=2, thumb=18)
    assert (best.it, last.it, [g.it for g in strip]) == (200, 300, [100, 300])
    assert best.width == 72  # a 36 px grid shown at twice its size

    def pixels(uri: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert np.array_equal(pixels(best.uri), np.full((36, 36, 3), 40, np.uint8))
    assert pixels(strip[0].uri).shape == (18, 18, 3)  # scaled down for the strip
    assert grids.nearest(run.grids, 240)[0] == 200 and grids.nearest(run.grids, 250)[0] == 200


def test_svg_axes_ticks_and_thinning():
    assert svg.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(13, 2000) == [0, 500, 1000, 1500, 2000]
    assert svg.log_ticks(0.04, 8) == [0.05, 0.1, 0.2, 0.5, 1, 2, 5]
    assert svg.use_log([0.04, 8.0]) and not svg.use_log([1.0, 8.0]) and not svg.use_log([-1, 9])
    pts = [(float(i), float(i)) for i in range(1000)]
    thin = svg.thin(pts, 10)
    assert len(thin) == 10 and thin[0] == pts[0] and thin[-1] == pts[-1]
    fig = ET.fromstring(svg.plot([svg.Series("a", "#000", pts, key="r")], "x", "y"))
    line = next(fig.iter("{http://www.w3.org/2000/svg}polyline"))
    assert len(line.get("points").split()) == svg.MAX_POINTS and line.get("data-run") == "r"


def test_a_single_run_and_a_folder_of_sweeps(cli, tmp_path):
    one = make_job(tmp_path / "a", "gan-qp", 0, "done", [(100, 9.0)], [(100, 1.0)])
    make_job(tmp_path / "b", "gan-qp", 0, "done", [(100, 8.0)], [(100, 1.0)])
    assert [r.key for r in find_runs(one)] == [one.name]
    assert [r.key for r in find_runs(tmp_path)] == [f"a/{one.name}", f"b/{one.name}"]
    out = tmp_path / "deep" / "r.html"
    r = cli("report", f"runs={tmp_path}", f"out={out}")
    assert r.code == 0 and out.is_file() and "2 run(s) in 1 configuration(s)" in r.out


@pytest.mark.parametrize(("args", "names"), [
    ("runs={empty}", "runs={empty} holds no run of `ganqp train`"),
    ("runs={empty}/nope", "runs={empty}/nope is not a directory"),
    ("runs={sweep} out=/proc/report.html", "/proc is not writable"),
    ("runs={sweep} out={sweep}/report.txt", "out='{sweep}/report.txt'"),
    ("runs={sweep} strip=-1", "strip=-1"),
    ("", "runs is required"),
])
def test_bad_input(cli, sweep, tmp_path, args, names):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "fid.json").write_text(json.dumps({"fid": 1.0}))
    fill = {"empty": tmp_path / "empty", "sweep": sweep}
    r = cli("report", *[a.format(**fill) for a in args.split()])
    assert r.code == 2, r
    assert r.err.startswith("ganqp: error: ") and "Traceback" not in r.err
    assert names.format(**fill) in r.msg, r
    assert not (sweep / "report.html").exists()


def test_config_interpolations_resolve_as_omegaconf_does(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from ganqp_cli.report.runs import read_config
    monkeypatch.setenv("GANQP_REPORT_TEST", "/data")
    cfg = {"res": "${oc.select:data.preset.res,128}", "w": "${oc.select:data.preset.w,0.5}",
           "data": {"preset": {"res": 32, "it": "${train.n}"}, "root": "${oc.env:GANQP_DATA,"
                    "data}/x", "env": "${oc.env:GANQP_REPORT_TEST}"},
           "train": {"n": 7, "iters": "${oc.select:data.preset.it,100}", "s": "a${res}b"},
           "l": ["${train.n}", {"k": "${res}"}], "none": None}
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    monkeypatch.delenv("GANQP_DATA", raising=False)
    got, note = read_config(tmp_path)
    assert note is None
    assert got == OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    assert (got["res"], got["w"], got["train"]["iters"], got["train"]["s"]) == (32, 0.5, 7,
                                                                                 "a32b")
