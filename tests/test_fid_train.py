"""FID during training (digits extractor): fid.jsonl, metrics.jsonl, best.pt, resume; and a
checkpoint's FID = its folder-of-samples FID = the value logged in training = the value of a
2-process torchrun (gloo) run."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ganqp_cli.cli import main
from tests.conftest import torchrun

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


def test_two_gloo_processes_give_the_single_process_fid_reading_rank_0s_cache(
        run: SimpleNamespace, tmp_path: Path) -> None:
    """Rank 1 has an empty cache of its own (another node): only rank 0 reads the cache
    (classifier and reference statistics); rank 1 gets them by broadcast and writes none."""
    ckpt = run.dir / "checkpoints" / "best.pt"
    args = [f"ckpt={ckpt}", "n=101", "fid.extractor=digits", "device=cpu",
            "fid.metrics=[fid,kid,pr,dc,is]"]
    main(["fid", *args, f"out={tmp_path / 'one.json'}"])
    other = tmp_path / "other-node"
    proc = torchrun("fid", *args, f"out={tmp_path / 'two.json'}",
                    script=str(Path(__file__).with_name("rank_cache_launcher.py")),
                    env={"GANQP_OTHER_NODE_CACHE": str(other)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "computing" not in proc.stdout  # rank 0's cache held the statistics
    assert not (other / "rank1").exists() or not any((other / "rank1").rglob("*"))
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["n"] == one["n"] == 101
    for key in ("fid", "kid", "precision", "recall", "density", "coverage",
                "inception_score"):
        assert two[key] == pytest.approx(one[key], rel=1e-9), key


def test_training_under_torchrun_computes_fresh_statistics_and_logs_the_checkpoints_fid(
        tmp_path: Path) -> None:
    """2 gloo processes, an empty cache: the classifier and the reference statistics are
    made under torchrun (rank 0 writes them), and the FID logged at the last iteration is
    the one `ganqp fid` finds for last.pt in one process."""
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    args = ["train", "res=16", "arch.width=0.125", "train.batch_size=8", "train.iters=6",
            "train.fid_every=3", "train.fid_n=40", "fid.extractor=digits",
            "fid.metrics=[fid,kid,pr]", "train.log_every=3", "train.sample_every=0",
            "train.ckpt_every=3", "train.workers=0", "device=cpu",
            f"hydra.run.dir={run_dir}"]
    proc = torchrun(*args, env={"GANQP_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("computing reference statistics") == 1
    assert (cache / "digits_classifier_v1.pt").is_file()
    assert len(list((cache / "fid_stats").glob("digits-16px-n1797-*.npz"))) == 1
    logged = rows(run_dir / "fid.jsonl")
    assert [r["iter"] for r in logged] == [3, 6]
    assert list(logged[-1]) == ["iter", "fid", "kid", "kid_std", "precision", "recall", "n",
                                "extractor", "dims"]
    os.environ["GANQP_CACHE"] = str(cache)  # restored by the autouse fixture
    out = tmp_path / "fid.json"
    main(["fid", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}", "n=40", "fid.extractor=digits",
          "fid.metrics=[fid,kid,pr]", "device=cpu", f"out={out}"])
    got = json.loads(out.read_text())
    for key in ("fid", "kid", "precision", "recall"):
        assert got[key] == pytest.approx(logged[-1][key], rel=1e-9), key


def test_repeats_are_the_mean_and_std_of_single_draws(run: SimpleNamespace, tmp_path: Path
                                                      ) -> None:
    ckpt = run.dir / "checkpoints" / "best.pt"
    base = [f"ckpt={ckpt}", "n=60", "fid.extractor=digits", "fid.metrics=[fid,dc]"]
    singles = []
    for seed in (4, 5, 6):
        main(["fid", *base, f"fid.seed={seed}", f"out={tmp_path / f's{seed}.json'}"])
        singles.append(json.loads((tmp_path / f"s{seed}.json").read_text()))
    main(["fid", *base, "fid.seed=4", "fid.repeats=3", f"out={tmp_path / 'r.json'}"])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["repeats"] == 3 and rep["seeds"] == [4, 5, 6]
    for key in ("fid", "density", "coverage"):
        vals = [s[key] for s in singles]
        assert rep[key] == pytest.approx(statistics.fmean(vals), rel=1e-12), key
        assert rep[f"{key}_repeat_std"] == pytest.approx(statistics.stdev(vals), rel=1e-9)
        assert [d[key] for d in rep["draws"]] == vals
    assert len({s["fid"] for s in singles}) == 3  # the draws differ


class Noisy(torch.nn.Module):
    """G(z): a real digit chosen by z, plus noise of a settable scale (more noise, fewer
    samples on the data manifold)."""

    def __init__(self) -> None:
        super().__init__()
        from ganqp_cli.data import Digits
        self.register_buffer("images", Digits(res=16).tensor.float() / 127.5 - 1)
        self.weight = torch.nn.Parameter(torch.zeros(()))  # generate() looks up the device
        self.noise = 0.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e4).long() % self.images.shape[0]
        return (self.images[idx] + self.noise * z[:, 1:257].view(-1, 1, 16, 16)).clamp(-1, 1)


def test_monitor_logs_every_selected_metric_and_keeps_best_by_its_direction(tmp_path: Path
                                                                           ) -> None:
    from omegaconf import OmegaConf

    from ganqp_cli.data import Digits
    from ganqp_cli.metrics.monitor import BEST_KEY, FidMonitor
    fid = OmegaConf.load(Path(__file__).parents[1] / "conf" / "fid" / "default.yaml")
    cfg = OmegaConf.create({"train": {"fid_every": 1, "fid_n": 200}, "fid": fid})
    cfg.fid.merge_with({"extractor": "digits", "metrics": ["fid", "kid", "pr", "dc", "is"],
                        "best": "precision", "kid_subsets": 5})
    extra: dict = {}
    mon = FidMonitor.create(cfg, Digits(res=16), torch.device("cpu"), tmp_path, extra, 0)
    G = Noisy()
    improved = []
    for it, noise in enumerate((0.8, 0.0, 0.4, 0.0), start=1):
        G.noise = noise
        logged = mon.evaluate(it, G, 300)
        improved.append(mon.improved)
    keys = ["fid", "kid", "kid_std", "precision", "recall", "density", "coverage",
            "inception_score", "inception_score_std"]
    assert list(logged) == keys
    table = rows(tmp_path / "fid.jsonl")
    assert [list(r) for r in table] == [["iter", *keys, "n", "extractor", "dims"]] * 4
    p = [r["precision"] for r in table]
    assert p[0] < p[2] < p[1] == p[3]  # noise lowers precision; equal z, equal numbers
    assert improved == [True, True, False, False]  # higher is better; a tie is no gain
    assert extra[BEST_KEY] == {"precision": p[1], "iter": 2}
    fids = [r["fid"] for r in table]
    assert fids[1] < fids[2] < fids[0]  # and FID agrees on the order
