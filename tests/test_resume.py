"""Resuming from a checkpoint written mid-run, with rows logged after it: what a crash leaves.

A run that dies after its last checkpoint has metrics.jsonl (and fid.jsonl) rows for the
iterations since; the resumed run must drop them and redo those iterations exactly, so the
run directory ends as an uninterrupted run's would. The checkpoint's `extra` carries the best
FID so far: a resume must keep it, not restart the search for a best from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tests.conftest import TINY, assert_same_state, read_metrics

TIMING = {"img_per_s", "it_per_s", "elapsed_s"}  # wall-clock fields differ between runs


def losses(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def crash_after(run: Path, it: int) -> None:
    """Leave `run` as a crash after iteration `it`'s checkpoint would: last.pt back to the
    numbered checkpoint of `it`, every row written later still in the logs."""
    shutil.copyfile(run / "checkpoints" / f"iter_{it:07d}.pt", run / "checkpoints" / "last.pt")


def test_resume_from_a_mid_run_checkpoint_redoes_the_rows_after_it(cli, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "train.iters=6", "train.log_every=1", "train.ckpt_every=2",
            "train.keep_ckpts=10", "train.sample_every=3", "data.hflip=true",
            f"hydra.run.dir={run}"]
    assert cli("train", *args).code == 0
    uninterrupted = read_metrics(run)
    final = load(run / "checkpoints" / "last.pt")
    sample = (run / "samples" / "iter_0000006.png").read_bytes()
    assert [row["iter"] for row in uninterrupted] == [1, 2, 3, 4, 5, 6]

    crash_after(run, 2)  # rows 3..6 and the sample grids of 3 and 6 were written after it
    r = cli("train", *args)
    assert r.code == 0 and "resumed at iter 2" in r.out, r
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [1, 2, 3, 4, 5, 6]  # each exactly once
    assert losses(rows) == losses(uninterrupted)  # the same values, to the last bit
    assert rows[:2] == uninterrupted[:2]  # the rows before the checkpoint are kept as they were
    assert_same_state(load(run / "checkpoints" / "last.pt"), final)
    assert (run / "samples" / "iter_0000006.png").read_bytes() == sample
    assert json.loads((run / "status.json").read_text())["status"] == "done"


FID = ["train.fid_every=5", "train.fid_n=100", "fid.extractor=digits", "train.ckpt_every=5",
       "train.keep_ckpts=10", "train.log_every=5", "train.sample_every=0", "train.iters=20",
       "device=cpu"]


def fid_rows(run: Path) -> list[dict]:
    return [json.loads(r) for r in (run / "fid.jsonl").read_text().splitlines() if r.strip()]


def test_fid_best_from_before_the_checkpoint_survives_a_resume(cli, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, *FID, f"hydra.run.dir={run}"]
    assert cli("train", *args).code == 0
    reference_fid, reference_metrics = fid_rows(run), read_metrics(run)
    final = load(run / "checkpoints" / "last.pt")
    assert [r["iter"] for r in reference_fid] == [5, 10, 15, 20]
    best_file = (run / "checkpoints" / "best.pt").read_bytes()

    # The crash: last.pt back to iteration 10. Its best so far is made better than any later
    # evaluation (this short run improves at every one), as if the run had been at its best
    # at iteration 5: nothing after the resume may displace it.
    crash_after(run, 10)
    state = load(run / "checkpoints" / "last.pt")
    kept = {"fid": min(r["fid"] for r in reference_fid) / 2, "iter": 5}
    assert state["extra"]["fid_best"]["iter"] in (5, 10)
    state["extra"]["fid_best"] = kept
    torch.save(state, run / "checkpoints" / "last.pt")

    r = cli("train", *args)
    assert r.code == 0 and "resumed at iter 10" in r.out, r
    assert fid_rows(run) == reference_fid  # 15 and 20 dropped, redone, each once
    assert losses(read_metrics(run)) == losses(reference_metrics)
    last = load(run / "checkpoints" / "last.pt")
    assert last["extra"]["fid_best"] == kept
    assert (run / "checkpoints" / "best.pt").read_bytes() == best_file  # not rewritten
    final["extra"]["fid_best"] = kept  # the only difference from the uninterrupted run
    assert_same_state(last, final)


def test_a_conditional_run_resumes_bitwise_with_its_labels(cli, tmp_path):
    """cond=true: the labels come with the batches (and the EMA generator's class rows with
    the grids), so a resumed run redoes iterations 3-6 exactly, classes in the checkpoint."""
    run = tmp_path / "run"
    args = [*TINY, "cond=true", "train.iters=6", "train.log_every=1", "train.ckpt_every=2",
            "train.keep_ckpts=10", "train.sample_every=3", f"hydra.run.dir={run}"]
    assert cli("train", *args).code == 0
    uninterrupted, final = read_metrics(run), load(run / "checkpoints" / "last.pt")
    sample = (run / "samples" / "iter_0000006.png").read_bytes()
    assert final["classes"] == [str(k) for k in range(10)]
    assert sum(final["class_counts"]) == 1797
    crash_after(run, 2)
    r = cli("train", *args)
    assert r.code == 0 and "resumed at iter 2" in r.out, r
    assert losses(read_metrics(run)) == losses(uninterrupted)
    assert_same_state(load(run / "checkpoints" / "last.pt"), final)
    assert (run / "samples" / "iter_0000006.png").read_bytes() == sample
    # the same directory without cond=true is another model: refused, naming both
    crash_after(run, 2)
    r = cli("train", *[a for a in args if a != "cond=true"])
    assert r.code == 2 and "cond=true with 10 classes" in r.msg, r
