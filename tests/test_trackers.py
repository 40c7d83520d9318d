"""The `logger` config group with the real packages: one tiny run with all four trackers,
stopped after 2 iterations and resumed to 4, read back from each tracker's own files
(MlflowClient on the file store, the wandb offline run's records, TensorBoard's events,
metrics.csv) and compared with metrics.jsonl; under torchrun only rank 0 logs; no tracker
without `logger=`; a missing package is refused naming the extra."""

from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, read_metrics, torchrun

RUN = [*TINY, "train.iters=2", "logger=[tensorboard,csv,mlflow,wandb]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """A run of 2 iterations resumed to 4 in the same directory, with every tracker."""
    from ganqp_cli.cli import main
    root = tmp_path_factory.mktemp("trackers")
    run, uri = root / "run", (root / "mlruns").as_uri()
    for iters in (2, 4):
        try:
            main(["train", *RUN, f"train.iters={iters}", f"logger.mlflow.tracking_uri={uri}",
                  f"hydra.run.dir={run}"])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
    return run, uri


def ids(run: Path) -> dict:
    return json.loads((run / "trackers.json").read_text())


def test_mlflow_run_continues_with_every_row_param_and_grid(run):
    from mlflow.tracking import MlflowClient
    path, uri = run
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("ganqp")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [ids(path)["mlflow"]["run_id"]]  # one run, resumed
    r = runs[0]
    assert r.info.status == "FINISHED" and r.info.run_name == "run"
    rows = read_metrics(path)
    assert [row["iter"] for row in rows] == [2, 4]
    for key in ("d_loss", "g_loss", "dT", "it_per_s"):
        history = sorted(client.get_metric_history(r.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(row["iter"], row[key]) for row in rows]
    params = r.data.params  # the resolved config, dotted; a changed value kept as a tag
    assert (params["train.batch_size"], params["objective.name"], params["res"]) == (
        "16", "gan-qp", "16")
    assert params["train.iters"] == "2" and r.data.tags["ganqp.changed_at_2"] == "train.iters=4"
    grids = [f.path for f in client.list_artifacts(r.info.run_id, "samples")]
    assert grids == ["samples/iter_0000002.png", "samples/iter_0000004.png"]


def wandb_records(path: Path) -> list:
    """The records of a .wandb file (LevelDB log blocks of 32 KiB after a 7-byte header,
    each record a 7-byte header and a protobuf Record, split over blocks when long)."""
    from wandb.proto import wandb_internal_pb2 as pb
    raw, out, pos, parts = path.read_bytes(), [], 7, []
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        room = 32768 - pos % 32768
        if room < 7:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        parts.append(raw[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # full, or the last part
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            out.append(rec)
            parts = []
        elif kind == 0:
            parts = []
    return out


def test_wandb_offline_run_holds_every_row_and_the_config(run):
    path, _ = run
    files = sorted(path.glob("wandb/offline-run-*/run-*.wandb"))
    run_id = ids(path)["wandb"]["id"]
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)
    history, config = {}, {}
    for f in files:
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                       for i in rec.history.item}
                history.setdefault(row["_step"], {}).update(row)
            elif kind == "run":
                assert rec.run.run_id == run_id
                config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
    for row in read_metrics(path):
        got = history[row["iter"]]
        assert all(got[k] == pytest.approx(row[k], rel=1e-12) for k in ("d_loss", "g_loss"))
        assert got["samples/_type"] == "image-file"
    assert config["train"]["batch_size"] == 16 and config["objective"]["name"] == "gan-qp"


def test_tensorboard_and_csv_hold_the_rows_once(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    path, _ = run
    rows = read_metrics(path)
    tb = EventAccumulator(str(path / "tb"))
    tb.Reload()
    assert [(e.step, e.value) for e in tb.Scalars("g_loss")] == [
        (row["iter"], float(np.float32(row["g_loss"]))) for row in rows]
    with open(path / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in table] == [2, 4]
    assert [float(r["d_loss"]) for r in table] == [row["d_loss"] for row in rows]


@pytest.mark.slow
def test_under_torchrun_only_rank_0_logs(tmp_path):
    """2 gloo ranks: one TensorBoard event file and each row once in metrics.csv (a second
    writer would double the rows or leave a second event file)."""
    run = tmp_path / "run"
    r = torchrun("train", *TINY, "train.iters=2", "train.log_every=1", "train.sample_every=0",
                 "logger=[tensorboard,csv]", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cpu x2" in r.stdout
    assert len(list((run / "tb").rglob("events.out.tfevents.*"))) == 1
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(row["iter"]) for row in table] == [row["iter"] for row in read_metrics(run)] \
        == [1, 2]


def test_no_tracker_unless_asked(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *TINY, "train.iters=2", f"hydra.run.dir={run}").code == 0
    assert (run / "metrics.jsonl").is_file()
    assert not (run / "tb").exists() and not (run / "trackers.json").exists()


@pytest.mark.parametrize(("package", "option"), [("mlflow", "mlflow"), ("wandb", "wandb"),
                                                 ("tensorboard", "tensorboard")])
def test_a_missing_package_names_its_extra(cli, tmp_path, monkeypatch, package, option):
    monkeypatch.setitem(sys.modules, package, None)  # what Python does for a missing module
    run = tmp_path / "run"
    r = cli("train", *TINY, f"logger=[csv,{option}]", f"hydra.run.dir={run}")
    assert r.code == 2, r
    assert f"logger={option} needs the {package} package" in r.msg
    assert f"pip install 'ganqp[{option}]'" in r.msg and "Traceback" not in r.err
    assert not run.exists()


def test_an_unknown_logger_or_key_is_refused(cli, tmp_path):
    r = cli("train", *TINY, "logger=[csv,neptune]", f"hydra.run.dir={tmp_path / 'a'}")
    assert r.code == 2 and "logger=neptune is not an option" in r.msg, r
    assert "csv, mlflow, tensorboard, wandb" in r.msg
    r = cli("train", *TINY, "logger=wandb", "logger.wandb.mode=sometimes",
            f"hydra.run.dir={tmp_path / 'b'}")
    assert r.code == 2 and "logger.wandb.mode='sometimes'" in r.msg, r
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
