"""LSUN as shipped: an LMDB directory of encoded images, read directly (and prepared)."""

from __future__ import annotations

import io
import sys

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.data import Batches, DataSet, open_images, square_resize
from ganqp_cli.data.lmdb_set import LmdbImages
from ganqp_cli.errors import UserError
from tests.conftest import TINY

CPU = torch.device("cpu")


def _encoded(rng, fmt, size):
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, quality=90)
    return buf.getvalue()


def write_lmdb(path, n=12, bad=()):
    """An LSUN-style database: 40-hex-character keys -> webp (even) or jpeg (odd) bytes of
    non-square images. Keys are inserted out of order; LMDB keeps them sorted."""
    rng = np.random.default_rng(0)
    values = {}
    for i in range(n):
        key = f"{(i * 7919) % 1000:03d}".ljust(40, "a").encode()
        values[key] = (b"not an image" if i in bad else
                       _encoded(rng, "WEBP" if i % 2 == 0 else "JPEG", (40 + i, 30)))
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key in reversed(list(values)):
            txn.put(key, values[key])
    env.close()
    return dict(sorted(values.items()))


def test_lmdb_items_are_the_decoded_values_in_key_order(tmp_path):
    values = write_lmdb(tmp_path / "church_outdoor_train_lmdb")
    d = open_images(str(tmp_path / "church_outdoor_train_lmdb"), 16, name="lsun-church")
    assert isinstance(d, LmdbImages) and isinstance(d, DataSet)
    assert len(d) == 12 and d.shape == (3, 16, 16)
    for i, (key, value) in enumerate(values.items()):
        assert d.key(i) == key
        assert torch.equal(d.load(i), square_resize(Image.open(io.BytesIO(value)), 16, 3))
    assert d.describe(0).endswith("key " + next(iter(values)).decode())


def test_lmdb_opens_lazily_in_each_worker_process(tmp_path):
    write_lmdb(tmp_path / "db")
    d = open_images(str(tmp_path / "db"), 16, hflip=True)
    d.load(0)  # the main process has an open environment; workers must not inherit it
    a = Batches(d, 4, seed=2, device=CPU, workers=0)
    b = Batches(d, 4, seed=2, device=CPU, workers=2)
    for _ in range(6):
        assert torch.equal(next(a), next(b))


def test_two_readers_of_one_database_in_one_process_share_its_environment(tmp_path):
    # CI once failed here: `ganqp prepare` after an in-process `ganqp train` met the training
    # set's still-open environment ("already open in this process") when gc had not run.
    values = write_lmdb(tmp_path / "db")
    first = open_images(str(tmp_path / "db"), 16)
    first.load(0)
    second = open_images(str(tmp_path / "db") + "/", 16)  # the same files, spelt differently
    assert torch.equal(second.load(3), first.load(3))
    assert len(second) == len(values)


def test_lsun_config_trains_on_the_lmdb_and_prepares_it(cli, tmp_path):
    write_lmdb(tmp_path / "db", bad=(5,))
    args = [*TINY, "data=lsun-church", f"data.root={tmp_path / 'db'}", "train.batch_size=4"]
    r = cli("train", *args, "train.workers=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 2 and "db key" in r.msg and "Traceback" not in r.err, r
    r = cli("train", *args, "data.on_error=skip", f"hydra.run.dir={tmp_path / 'run2'}")
    assert r.code == 0 and "skipping unreadable image" in r.err, r
    r = cli("prepare", "data=lsun-church", f"data.root={tmp_path / 'db'}", "res=16",
            f"out={tmp_path / 'church16'}", "data.on_error=skip", "workers=2", "chunk=5")
    assert r.code == 0 and "1 unreadable" in r.out, r
    src = open_images(str(tmp_path / "db"), 16, on_error="skip")
    prepared = open_images(str(tmp_path / "church16"), 16, on_error="skip")
    assert all(torch.equal(prepared.load(i), src.load(i)) for i in range(len(src)))


def test_missing_lmdb_package_is_a_clear_error(tmp_path, monkeypatch):
    write_lmdb(tmp_path / "db")
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(UserError, match=r"needs the lmdb package: pip install 'ganqp\[lsun\]'"):
        open_images(str(tmp_path / "db"), 16)
