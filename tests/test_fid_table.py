"""scripts/fid_table.py (a thin entry to ganqp_cli/report's table) on fake sweeps with known
numbers: the table's values, exactly."""

from __future__ import annotations

import csv
import importlib.util
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ganqp_cli.report.runs import find_runs
from ganqp_cli.report.table import load_paper, summarize
from ganqp_cli.report.text import markdown
from tests.report_runs import make_job

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fid_table", ROOT / "scripts" / "fid_table.py")
fid_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fid_table)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    s = tmp_path / "sweep"
    make_job(s, "gan-qp", 0, "done", [(100, 50.0), (200, 30.0), (300, 35.0)],
             [(100, 10.0), (200, 5.0), (300, 10.0)])
    make_job(s, "gan-qp", 1, "done", [(100, 40.0), (200, 34.0), (300, 33.0)],
             [(100, 5.0), (200, 5.0), (300, 5.0)])
    make_job(s, "wgan-gp", 0, "done", [(100, 45.0), (200, 48.0), (300, 46.0)],
             [(100, 2.0), (200, 2.0), (300, 2.0)])
    make_job(s, "wgan-gp", 1, "running", [(100, 47.0)], [(100, 4.0)], at=150)
    make_job(s, "sgan-sn", 0, "failed", [(100, 60.0)], [(100, 10.0)], at=120)
    make_job(s, "lsgan-sn", 0, None, [], [])
    (s / "multirun.yaml").write_text("hydra: {}\n")
    (s / ".submitit" / "1" / ".hydra").mkdir(parents=True)  # not a job
    (s / ".submitit" / "1" / ".hydra" / "config.yaml").write_text("{}\n")
    return s


def rows_by_objective(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "fid_table.csv") as f:
        return {r["objective"]: r for r in csv.DictReader(f)}


def test_table_numbers_status_and_paper_columns(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert fid_table.main([str(sweep), "--out", str(out)]) == 0
    rows = rows_by_objective(out)
    assert list(rows) == ["gan-qp", "wgan-gp", "sgan-sn", "lsgan-sn"]  # the paper's order

    qp_s = [(100 / 10 + 100 / 5 + 100 / 10) / 300, (100 / 5 + 100 / 5 + 100 / 5) / 300]
    g = rows["gan-qp"]
    assert float(g["fid_mean"]) == statistics.fmean([30.0, 33.0]) == 31.5
    assert float(g["fid_std"]) == statistics.stdev([30.0, 33.0])
    assert g["best_iters"] == "200;300"
    assert float(g["sec_per_iter"]) == statistics.fmean(qp_s)
    assert float(g["rel_time_vs_gan_qp"]) == 1.0
    assert (g["done"], g["jobs"], g["paper_fid"], g["paper_rel_time"]) == ("2", "2", "45.0", "1.0")

    w = rows["wgan-gp"]  # one seed still running: counted, its FID so far included
    assert float(w["fid_mean"]) == 46.0 and float(w["fid_std"]) == statistics.stdev([45.0, 47.0])
    assert w["best_iters"] == "100;100"
    assert float(w["sec_per_iter"]) == statistics.fmean([0.5, 0.25])
    assert float(w["rel_time_vs_gan_qp"]) == pytest.approx(0.375 / statistics.fmean(qp_s),
                                                           rel=1e-15)
    assert (w["done"], w["running"], w["paper_fid"], w["paper_rel_time"]) == (
        "1", "1", "55.5", "1.5")

    s = rows["sgan-sn"]
    assert (s["failed"], s["fid_mean"], s["fid_std"], s["paper_fid"]) == ("1", "60.0", "", "44.5")
    assert float(s["rel_time_vs_gan_qp"]) == pytest.approx(0.1 / statistics.fmean(qp_s))
    ls = rows["lsgan-sn"]  # not started: kept, with nothing measured
    assert (ls["not_started"], ls["fid_mean"], ls["sec_per_iter"]) == ("1", "", "")

    md = (out / "fid_table.md").read_text()
    assert md == capsys.readouterr().out
    assert "| gan-qp | 31.50 ± 2.12 | 200, 300 | 0.1667 | 1.00x | 2/2 done | 45 | 1x |" in md
    assert "1/2 done; 1 running (seed 1 at 150/300)" in md
    assert "0/1 done; 1 failed (seed 0 at 120/300)" in md
    assert "0/1 done; 1 not started (seed 0 at 0/300)" in md
    assert "paper FID (CelebA-HQ 128, Keras Inception)" in md
    assert "domain metric" in md  # digits FID is not comparable with the paper's
    lines = ET.parse(out / "fid_curves.svg").getroot().iter(f"{SVG}polyline")
    # one line per job with two FIDs or more (the others are single points)
    assert sorted(p.get("data-run") for p in lines) == [
        "experiment=digits-table,objective=gan-qp,seed=0",
        "experiment=digits-table,objective=gan-qp,seed=1",
        "experiment=digits-table,objective=wgan-gp,seed=0"]


def test_final_fid_and_the_seeds_of_a_row(sweep):
    rows = summarize(find_runs(sweep))
    wgan = next(r for r in rows if r.objective == "wgan-gp")
    assert [run.seed for run in wgan.runs] == [0, 1]
    assert wgan.final_fid.mean == statistics.fmean([46.0, 47.0])
    assert wgan.final_fid.std == statistics.stdev([46.0, 47.0])
    assert (wgan.best_fid.n, wgan.final_fid.n) == (2, 2)


def test_resolution_picks_the_papers_row_and_variants_are_separate_rows(tmp_path):
    s = tmp_path / "sweep"
    kw = dict(data="celebahq", res=256, extractor="inception")
    make_job(s, "gan-qp", 0, "done", [(1000, 25.0)], [(1000, 4.0)], **kw)
    make_job(s, "sgan-sn", 0, "done", [(1000, 29.0)], [(1000, 2.0)], **kw)
    make_job(s, "gan-qp", 0, "done", [(1000, 24.0)], [(1000, 1.0)], **kw,
             extra=("objective.opt_d.lr=1e-4",))
    make_job(s, "sgan-sn", 0, "done", [(1000, 28.0)], [(1000, 4.0)], **kw,
             extra=("objective.opt_d.lr=1e-4", "data.root=/elsewhere"))
    rows = summarize(find_runs(s))
    got = [(r.variant, r.objective, r.best_fid.mean, r.rel_time, r.paper["fid"]) for r in rows]
    assert got == [("", "gan-qp", 25.0, 1.0, 22.7), ("", "sgan-sn", 29.0, 2.0, 27.9),
                   ("objective.opt_d.lr=1e-4", "gan-qp", 24.0, 1.0, 22.7),
                   ("objective.opt_d.lr=1e-4", "sgan-sn", 28.0, 0.25, 27.9)]
    md = markdown(rows)
    assert "paper FID (CelebA-HQ 256, Keras Inception)" in md
    assert "Keras' ImageNet InceptionV3" in md  # marked as a different network


def test_paper_numbers_are_the_shared_reference():
    rows = load_paper()
    assert [(r["resolution"], r["objective"], r["fid"]) for r in rows] == [
        (128, "gan-qp", 45.0), (128, "gan-qp-l2", 44.7), (128, "wgan-gp", 55.5),
        (128, "wgan-sn", 47.8), (128, "sgan-sn", 44.5), (128, "lsgan-sn", 45.8),
        (256, "gan-qp", 22.7), (256, "sgan-sn", 27.9), (512, "gan-qp", 26.44)]


def test_not_a_sweep_is_a_clear_error(tmp_path, capsys):
    assert fid_table.main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert fid_table.main([str(tmp_path)]) == 2
    assert "no job directories" in capsys.readouterr().err


def test_precision_recall_density_coverage_at_the_best_fid(tmp_path, capsys):
    s = tmp_path / "sweep"
    pr = lambda p, r, d=None, c=None: {"precision": p, "recall": r,  # noqa: E731
                                       **({"density": d, "coverage": c} if d else {})}
    make_job(s, "gan-qp", 0, "done", [(100, 50.0), (200, 30.0)], [(100, 1.0), (200, 1.0)],
             more={100: pr(0.1, 0.2, 0.3, 0.4), 200: pr(0.8, 0.5, 0.9, 0.6)})
    make_job(s, "gan-qp", 1, "done", [(100, 20.0), (200, 40.0)], [(100, 1.0), (200, 1.0)],
             more={100: pr(0.6, 0.7, 1.1, 0.8), 200: pr(0.9, 0.9, 0.9, 0.9)})
    make_job(s, "wgan-gp", 0, "done", [(100, 45.0)], [(100, 1.0)],
             more={100: pr(0.5, 0.25)})  # pr only: its density/coverage stay empty
    out = tmp_path / "out"
    assert fid_table.main([str(s), "--out", str(out), "--no-plot"]) == 0
    rows = rows_by_objective(out)
    g = rows["gan-qp"]  # best FID: seed 0 at 200, seed 1 at 100
    assert float(g["precision_mean"]) == statistics.fmean([0.8, 0.6])
    assert float(g["precision_std"]) == statistics.stdev([0.8, 0.6])
    assert float(g["recall_mean"]) == statistics.fmean([0.5, 0.7])
    assert float(g["density_mean"]) == statistics.fmean([0.9, 1.1])
    assert float(g["coverage_mean"]) == statistics.fmean([0.6, 0.8])
    w = rows["wgan-gp"]
    assert (float(w["precision_mean"]), w["precision_std"], w["density_mean"]) == (0.5, "", "")
    md = capsys.readouterr().out
    assert "| precision / recall at the best FID | density / coverage at the best FID |" in md
    assert "| 25.00 ± 7.07 | 200, 100 | 0.700 ± 0.141 / 0.600 ± 0.141 | 1.000 ± 0.141 / " \
           "0.700 ± 0.141 | 1.0000 |" in md
    assert "| 0.500 / 0.250 | – / – |" in md


def test_no_precision_columns_without_them(sweep, capsys):
    assert "precision" not in markdown(summarize(find_runs(sweep)))
