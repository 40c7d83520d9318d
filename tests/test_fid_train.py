"""FID during training (digits extractor): fid.jsonl, metrics.jsonl, best.pt, resume; and a
checkpoint's FID = its folder-of-samples FID = the value logged in training = the value of a
2-process torchrun (gloo) run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ganqp_cli.cli import main

FID_KEYS = ["iter", "fid", "kid", "kid_std", "n", "extractor", "dims"]
TRAIN = ["res=16", "train.batch_size=16", "train.fid_every=10", "train.fid_n=100",
         "fid.extractor=digits", "train.log_every=4", "train.sample_every=0",
         "train.ckpt_every=10", "device=cpu"]


def rows(path: Path) -> list[dict]:
    return [json.loads(r) for r in path.read_text().splitlines() if r.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("fidtrain")
    old = os.environ.get("GANQP_CACHE")
    os.environ["GANQP_CACHE"] = str(root / "cache")
    run_dir = root / "run"
    try:
        main(["train", *TRAIN, "train.iters=30", f"hydra.run.dir={run_dir}"])
        before = rows(run_dir / "fid.jsonl")
        best_before = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
        # resumed from last.pt (iteration 30): one more evaluation, at 40
        main(["train", *TRAIN, "train.iters=40", f"hydra.run.dir={run_dir}"])
    finally:
        if old is None:
            del os.environ["GANQP_CACHE"]
        else:
            os.environ["GANQP_CACHE"] = old
    return SimpleNamespace(root=root, dir=run_dir, cache=root / "cache", before=before,
                           best_before=best_before)


@pytest.fixture(autouse=True)
def isolated(run: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANQP_CACHE", str(run.cache))


def test_fid_rows_metrics_and_best_checkpoint(run: SimpleNamespace) -> None:
    fid_rows = rows(run.dir / "fid.jsonl")
    assert [r["iter"] for r in fid_rows] == [10, 20, 30, 40]
    assert fid_rows[:3] == run.before  # the resume kept the rows before it, redid none
    for r in fid_rows:
        assert list(r) == FID_KEYS
        assert (r["n"], r["extractor"], r["dims"]) == (100, "digits", 64)
        assert r["fid"] > 0 and r["kid_std"] > 0
    metrics = {r["iter"]: r for r in rows(run.dir / "metrics.jsonl")}
    for r in fid_rows:  # an evaluation forces a metrics row, beside the losses
        m = metrics[r["iter"]]
        assert (m["fid"], m["kid"], m["kid_std"]) == (r["fid"], r["kid"], r["kid_std"])
        assert "d_loss" in m and "g_loss" in m
    assert sorted(metrics) == sorted({*range(4, 41, 4), 10, 30})
    best_row = min(fid_rows, key=lambda r: r["fid"])
    best = torch.load(run.dir / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(run.dir / "checkpoints" / "last.pt", weights_only=True)
    assert best["iter"] == best_row["iter"]
    want = {"fid": best_row["fid"], "iter": best_row["iter"]}
    assert best["extra"]["fid_best"] == want and last["extra"]["fid_best"] == want
    first_best = min(run.before, key=lambda r: r["fid"])
    assert run.best_before["iter"] == first_best["iter"]


def test_checkpoint_fid_equals_logged_and_folder_fid(run: SimpleNamespace, tmp_path: Path
                                                     ) -> None:
    best_row = min(rows(run.dir / "fid.jsonl"), key=lambda r: r["fid"])
    ckpt = run.dir / "checkpoints" / "best.pt"
    main(["fid", f"ckpt={ckpt}", "n=100", "fid.extractor=digits", f"out={tmp_path / 'c.json'}"])
    from_ckpt = json.loads((tmp_path / "c.json").read_text())
    assert from_ckpt["fid"] == pytest.approx(best_row["fid"], rel=1e-9)
    assert from_ckpt["kid"] == pytest.approx(best_row["kid"], rel=1e-9)
    assert from_ckpt["ckpt_iter"] == best_row["iter"]
    folder = tmp_path / "samples"
    main(["sample", f"ckpt={ckpt}", "n=100", "format=folder", f"out={folder}"])
    main(["fid", f"samples={folder}", "data=digits", "res=16", "fid.extractor=digits",
          f"out={tmp_path / 'f.json'}"])
    from_folder = json.loads((tmp_path / "f.json").read_text())
    assert from_folder["n"] == 100 and from_folder["n_ref"] == from_ckpt["n_ref"] == 1797
    assert from_folder["fid"] == pytest.approx(from_ckpt["fid"], rel=1e-9)
    assert from_folder["kid"] == pytest.approx(from_ckpt["kid"], rel=1e-9)


def test_two_gloo_processes_give_the_single_process_fid(run: SimpleNamespace, tmp_path: Path
                                                        ) -> None:
    ckpt = run.dir / "checkpoints" / "best.pt"
    args = [f"ckpt={ckpt}", "n=101", "fid.extractor=digits", "device=cpu"]
    main(["fid", *args, f"out={tmp_path / 'one.json'}"])
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "ganqp_cli", "fid", *args,
                           f"out={tmp_path / 'two.json'}"],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["n"] == one["n"] == 101
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-9)
    assert two["kid"] == pytest.approx(one["kid"], rel=1e-9)
