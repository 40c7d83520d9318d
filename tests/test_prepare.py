"""`ganqp prepare` and training from a prepared data set: the same pixels, order and flips as
the source, mismatches refused, atomic and resumable writing, unreadable images."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import ganqp_cli.prepare as prep
from ganqp_cli.data import (
    RESIZE_METHOD,
    Batches,
    DataSet,
    ImageFolder,
    PreparedImages,
    Torchvision,
    is_prepared,
    open_images,
    open_torchvision,
    read_meta,
)
from ganqp_cli.data.prepared import PIXELS_NAME, content_hash, partial_dir
from ganqp_cli.errors import UserError
from tests.conftest import TINY, write_images
from tests.test_data import _write_idx

CPU = torch.device("cpu")


def _source(tmp_path, n=23):
    """A folder of mixed png/jpg images of two shapes."""
    imgs = tmp_path / "imgs"
    write_images(imgs, n, size=(40, 24))
    write_images(imgs / "sub", 5, size=(24, 40), ext="jpg", seed=1)
    return imgs


def _prepare(cli, root, out, *extra, res=16, data="folder"):
    return cli("prepare", f"data={data}", f"data.root={root}", f"res={res}", f"out={out}", *extra)


def _all(data):
    return torch.stack([data.load(i) for i in range(len(data))])


def test_prepared_pixels_are_the_folder_pixels(cli, tmp_path):
    imgs, out = _source(tmp_path), tmp_path / "p16"
    r = _prepare(cli, imgs, out, "workers=2", "chunk=4")
    assert r.code == 0, r
    meta = read_meta(out)
    assert (meta["count"], meta["res"], meta["channels"]) == (28, 16, 3)
    assert meta["resize"] == RESIZE_METHOD and meta["unreadable"] == []
    assert meta["source"]["data"] == "folder" and meta["source"]["kind"] == "folder"
    assert meta["source"]["root"] == str(imgs.resolve())
    folder, prepared = ImageFolder(str(imgs), 16), open_images(str(out), 16)
    assert isinstance(prepared, PreparedImages) and isinstance(prepared, DataSet)
    assert prepared.in_memory
    want = _all(folder)
    assert torch.equal(_all(prepared), want)
    assert meta["sha256"] == content_hash(out) == hashlib.sha256(want.numpy().tobytes()
                                                                 ).hexdigest()
    assert (out / PIXELS_NAME).stat().st_size == 28 * 3 * 16 * 16
    assert not partial_dir(out).exists()


@pytest.mark.parametrize("holdout", [0.0, 0.25])
def test_prepared_stream_equals_the_folder_stream(cli, tmp_path, holdout):
    imgs, out = _source(tmp_path), tmp_path / "p16"
    assert _prepare(cli, imgs, out).code == 0
    folder = ImageFolder(str(imgs), 16, hflip=True, holdout=holdout)
    prepared = open_images(str(out), 16, hflip=True, holdout=holdout)
    assert len(prepared) == len(folder) == (21 if holdout else 28)
    streams = [Batches(folder, 4, seed=5, device=CPU, workers=2),   # DataLoader processes
               Batches(prepared, 4, seed=5, device=CPU, workers=0),  # gathered in place
               Batches(prepared, 4, seed=5, device=CPU, workers=2, resident_bytes=0)]  # threads
    flipped = 0
    for _ in range(12):
        a, b, c = (next(s) for s in streams)
        assert torch.equal(a, b) and torch.equal(a, c)
        flipped += int((a != a.flip(-1)).any())
    assert flipped  # the comparison covers flipped items
    streams[2].close()


def test_training_on_the_prepared_set_is_bitwise_the_folder_run(cli, tmp_path):
    imgs, out = _source(tmp_path), tmp_path / "p16"
    assert _prepare(cli, imgs, out).code == 0
    args = [*TINY, "data=folder", "data.hflip=true", "train.batch_size=4"]
    r = cli("train", *args, f"data.root={imgs}", "train.workers=1",
            f"hydra.run.dir={tmp_path / 'a'}")
    assert r.code == 0, r
    r = cli("train", *args, f"data.root={out}", f"hydra.run.dir={tmp_path / 'b'}")
    assert r.code == 0, r
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)
            for d in "ab")
    for part in ("models", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


def test_mismatches_are_refused_with_the_fix(cli, tmp_path):
    imgs, out = _source(tmp_path), tmp_path / "p16"
    assert _prepare(cli, imgs, out).code == 0
    args = [*TINY, "data=folder", f"data.root={out}", "train.batch_size=4",
            f"hydra.run.dir={tmp_path / 'run'}"]
    r = cli("train", *args, "res=32")
    assert r.code == 2 and "prepared at res=16" in r.msg and "res=32" in r.msg, r
    r = cli("train", *args, "data.channels=1")
    assert r.code == 2 and "3-channel" in r.msg and "data.channels=3" in r.msg, r
    meta = json.loads((out / "ganqp-prepared.json").read_text())
    (out / "ganqp-prepared.json").write_text(json.dumps({**meta, "resize": "old/v0"}))
    with pytest.raises(UserError, match="cropped and resized by 'old/v0'"):
        open_images(str(out), 16)
    (out / "ganqp-prepared.json").write_text(json.dumps(meta))
    with open(out / PIXELS_NAME, "r+b") as f:
        f.truncate(100)
    r = cli("train", *args)
    assert r.code == 2 and "damaged" in r.msg and "Traceback" not in r.err, r
    assert not (tmp_path / "run").exists()


def test_an_interrupted_prepare_leaves_nothing_complete_and_resumes(cli, tmp_path,
                                                                    monkeypatch):
    imgs, out = _source(tmp_path), tmp_path / "p16"
    decode = prep.decode_range

    def interrupted(lo, hi, stop):
        if lo >= 12:
            raise KeyboardInterrupt
        return decode(lo, hi, stop)

    monkeypatch.setattr(prep, "decode_range", interrupted)
    r = _prepare(cli, imgs, out, "workers=0", "chunk=4")
    assert r.code == 130 and "stopped at image 12 of 28" in r.msg, r
    assert not out.exists() and not is_prepared(partial_dir(out))
    assert json.loads((partial_dir(out) / "progress.json").read_text())["done"] == 12
    monkeypatch.setattr(prep, "decode_range", decode)
    r = _prepare(cli, imgs, out, "workers=2", "chunk=5")
    assert r.code == 0 and "resuming" in r.out and "at image 12 of 28" in r.out, r
    assert torch.equal(_all(open_images(str(out), 16)), _all(ImageFolder(str(imgs), 16)))
    assert read_meta(out)["sha256"] == content_hash(out)


def test_a_killed_prepare_leaves_no_complete_looking_output(cli, tmp_path):
    imgs, out = tmp_path / "imgs", tmp_path / "p64"
    write_images(imgs, 400, size=(256, 256), ext="jpg")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ganqp_cli", "prepare", "data=folder",
                             f"data.root={imgs}", "res=64", f"out={out}", "workers=0",
                             "chunk=1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pixels = partial_dir(out) / PIXELS_NAME
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if pixels.is_file() and pixels.stat().st_size >= 10 * 3 * 64 * 64:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "prepare finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and not is_prepared(partial_dir(out))
    r = _prepare(cli, imgs, out, "workers=2", "chunk=32", res=64)
    assert r.code == 0, r
    assert torch.equal(_all(open_images(str(out), 64)), _all(ImageFolder(str(imgs), 64)))


def _with_bad(tmp_path):
    imgs = _source(tmp_path)
    bad = imgs / "img_007.png"
    good = bad.read_bytes()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return imgs, bad, good


def test_unreadable_image_stops_prepare_and_the_fixed_source_resumes(cli, tmp_path):
    imgs, bad, good = _with_bad(tmp_path)
    out = tmp_path / "p16"
    r = _prepare(cli, imgs, out, "workers=2", "chunk=4")
    assert r.code == 2 and "img_007.png" in r.msg and "Traceback" not in r.err, r
    assert "stopped at image 4 of 28" in r.msg and not out.exists()
    bad.write_bytes(good)
    r = _prepare(cli, imgs, out, "workers=0", "chunk=4")
    assert r.code == 0 and "at image 4 of 28" in r.out, r
    assert torch.equal(_all(open_images(str(out), 16)), _all(ImageFolder(str(imgs), 16)))


def test_skipped_images_are_recorded_and_replaced_exactly_as_the_folder_does(cli, tmp_path):
    imgs, bad, _ = _with_bad(tmp_path)
    out = tmp_path / "p16"
    r = _prepare(cli, imgs, out, "data.on_error=skip")
    assert r.code == 0 and "1 unreadable" in r.out, r
    (entry,) = read_meta(out)["unreadable"]
    assert entry["index"] == 7 and entry["item"] == str(bad)
    with pytest.raises(UserError, match="img_007.png.*data.on_error=skip"):
        open_images(str(out), 16)
    folder = ImageFolder(str(imgs), 16, hflip=True, on_error="skip")
    prepared = open_images(str(out), 16, hflip=True, on_error="skip")
    logs = {0: [], 1: []}
    a = Batches(folder, 7, seed=1, device=CPU, workers=1, log=logs[0].append)
    b = Batches(prepared, 7, seed=1, device=CPU, workers=0, log=logs[1].append)
    for _ in range(8):
        assert torch.equal(next(a), next(b))
    assert a.pop_stats() == b.pop_stats() == {"data_skipped": 2.0}  # 56 draws, 2 epochs
    assert all(len(v) == 1 and "img_007.png" in v[0] for v in logs.values())


def test_output_and_source_checks(cli, tmp_path):
    imgs, out = _source(tmp_path), tmp_path / "p16"
    (tmp_path / "taken").mkdir()
    r = _prepare(cli, imgs, tmp_path / "taken")
    assert r.code == 2 and "is not a prepared data set" in r.msg, r
    assert _prepare(cli, imgs, out).code == 0
    r = _prepare(cli, imgs, out)
    assert r.code == 2 and "overwrite=true" in r.msg, r
    r = _prepare(cli, imgs / "sub", out, "overwrite=true")
    assert r.code == 0 and read_meta(out)["count"] == 5, r
    r = _prepare(cli, out, tmp_path / "again")
    assert r.code == 2 and "already a prepared data set" in r.msg, r
    r = cli("prepare", "data=ring8", "res=16", f"out={tmp_path / 'ring'}")
    assert r.code == 2 and "points, not images" in r.msg, r
    r = _prepare(cli, imgs, tmp_path / "x", res=20)
    assert r.code == 2 and "res=20" in r.msg, r
    r = cli("prepare", "data=folder", f"data.root={imgs}", "res=16")
    assert r.code == 2 and "out is required" in r.msg, r
    assert not (tmp_path / "ring").exists() and not (tmp_path / "x").exists()


def test_mnist_prepares_and_reads_back_through_its_own_config(cli, tmp_path):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.random.default_rng(0).integers(0, 256, (9, 28, 28), dtype=np.uint8)
    for stem, arr in (("train", imgs), ("t10k", imgs[:2])):
        _write_idx(raw / f"{stem}-images-idx3-ubyte", arr, 2051)
        _write_idx(raw / f"{stem}-labels-idx1-ubyte", np.zeros(len(arr), np.uint8), 2049)
    out = tmp_path / "mnist32"
    r = _prepare(cli, tmp_path / "mnist", out, data="mnist", res=32)
    assert r.code == 0, r
    assert read_meta(out)["channels"] == 1
    prepared = open_torchvision(str(out), 32, "mnist")
    assert isinstance(prepared, PreparedImages) and prepared.shape == (1, 32, 32)
    assert torch.equal(_all(prepared), _all(Torchvision(str(tmp_path / "mnist"), 32, "mnist")))


def test_fid_reads_a_prepared_set_through_the_protocol(cli, tmp_path):
    from ganqp_cli.metrics.features import dataset_source
    imgs, out = _source(tmp_path), tmp_path / "p16"
    assert _prepare(cli, imgs, out).code == 0
    src = dataset_source(open_images(str(out), 16, name="celebahq"), None)
    assert src.n == 28 and src.info == {"data": "celebahq", "res": 16, "root": str(out)}
    folder = ImageFolder(str(imgs), 16)
    assert all(torch.equal(src.item(i), folder.load(i)) for i in range(28))
