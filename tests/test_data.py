"""Data sets, the resumable stream, and data errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.data import (
    Batches,
    DataSet,
    Digits,
    ImageFolder,
    Ring8,
    StreamSampler,
    Torchvision,
)
from ganqp_cli.errors import UserError
from tests.conftest import TINY, write_images


def test_digits_are_offline_and_scaled():
    d = Digits(16)
    assert len(d) == 1797 and d.shape == (1, 16, 16)
    x = d.to_model(d.tensor[:8])
    assert x.min() >= -1 and x.max() <= 1 and x.dtype == torch.float32
    assert x.min() == -1 and x.max() > 0.9  # black background, bright strokes


def test_folder_crops_resizes_and_finds_all_extensions(tmp_path):
    write_images(tmp_path / "a", 3, size=(40, 24), ext="png")
    write_images(tmp_path / "a" / "sub", 2, size=(24, 40), ext="jpg")
    write_images(tmp_path / "b", 1, ext="webp")
    write_images(tmp_path / "b", 1, ext="bmp")
    (tmp_path / "notes.txt").write_text("not an image")
    d = ImageFolder(str(tmp_path), res=16)
    assert len(d) == 7
    x = d[(0, False)]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(d[(0, True)], x.flip(-1))


def test_centre_crop_keeps_the_middle(tmp_path):
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, 20:40] = 255  # a white centre square in a wide black image
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x = ImageFolder(str(tmp_path), res=16)[(0, False)]
    assert x.float().mean() > 250


def test_grayscale_folder(tmp_path):
    write_images(tmp_path, 2, mode="L")
    assert ImageFolder(str(tmp_path), res=16, channels=1)[(1, False)].shape == (1, 16, 16)


def test_missing_and_empty_roots_name_the_key(tmp_path):
    with pytest.raises(UserError, match="data.root=.*not a directory"):
        ImageFolder(str(tmp_path / "nope"), res=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        ImageFolder(str(tmp_path / "empty"), res=16)


def _write_idx(path, arr, magic):
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in arr.shape))
        f.write(arr.tobytes())


def test_mnist_through_torchvision(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(raw / "train-images-idx3-ubyte", imgs, 2051)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8), 2049)
    _write_idx(raw / "t10k-images-idx3-ubyte", imgs[:2], 2051)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(2, dtype=np.uint8), 2049)
    d = Torchvision(str(tmp_path), res=32, name="mnist")
    assert isinstance(d, DataSet) and len(d) == 5 and d.shape == (1, 32, 32)
    assert d[(2, False)].shape == (1, 32, 32)


def test_cifar10_missing_says_how_to_download(tmp_path):
    with pytest.raises(UserError, match="data.download=true"):
        Torchvision(str(tmp_path), res=32, name="cifar10")


def test_ring8_points_and_coverage():
    r = Ring8(n=4000)
    modes, quality = r.coverage(r.tensor)
    assert modes == 8 and quality > 0.98
    assert r.coverage(torch.zeros(100, 2)) == (0, 0.0)


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_stream_is_a_pure_function_of_seed_and_position():
    full = _take(StreamSampler(10, 4, seed=3, hflip=True), 40)
    assert sorted(i for i, _ in full[:10]) == list(range(10))  # an epoch is a permutation
    assert full[:10] != full[10:20]  # a new order each epoch
    later = _take(StreamSampler(10, 4, seed=3, hflip=True, start_batch=3), 28)
    assert later == full[12:40]
    assert any(f for _, f in full) and not all(f for _, f in full)


def test_two_ranks_together_see_the_single_process_batches():
    single = _take(StreamSampler(13, 6, seed=1), 30)
    r0 = _take(StreamSampler(13, 3, seed=1, rank=0, world=2), 15)
    r1 = _take(StreamSampler(13, 3, seed=1, rank=1, world=2), 15)
    merged = [x for j in range(5) for x in r0[3 * j:3 * j + 3] + r1[3 * j:3 * j + 3]]
    assert merged == single


def test_worker_loader_matches_in_process_order(tmp_path):
    write_images(tmp_path, 9, size=(16, 16))
    d = ImageFolder(str(tmp_path), res=16, hflip=True)
    a = Batches(d, 4, seed=0, device=torch.device("cpu"), workers=0)
    b = Batches(d, 4, seed=0, device=torch.device("cpu"), workers=2)
    for _ in range(4):
        assert torch.equal(next(a), next(b))
    assert a.consumed == b.consumed == 4


def test_corrupt_image_is_named_and_exits_2(cli, tmp_path):
    write_images(tmp_path / "imgs", 3)
    bad = tmp_path / "imgs" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    for workers in (0, 1):
        r = cli("train", *TINY, "data=folder", f"data.root={tmp_path / 'imgs'}",
                "train.batch_size=4", f"train.workers={workers}",
                f"hydra.run.dir={tmp_path / f'run{workers}'}")
        assert r.code == 2, r
        assert "broken.jpg" in r.msg and "Traceback" not in r.err


def test_folder_training_end_to_end(cli, tmp_path):
    write_images(tmp_path / "imgs", 8, size=(30, 20))
    r = cli("train", *TINY, "data=folder", f"data.root={tmp_path / 'imgs'}", "data.hflip=true",
            "train.batch_size=4", "train.workers=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 0, r
    assert (tmp_path / "run" / "samples" / "iter_0000004.png").is_file()


def test_batches_are_the_sampler_keys_with_flips_applied(tmp_path):
    write_images(tmp_path, 9, size=(16, 16))
    for data in (Digits(16, hflip=True), ImageFolder(str(tmp_path), res=16, hflip=True)):
        b = Batches(data, 4, seed=3, device=torch.device("cpu"), workers=0)
        keys = StreamSampler(len(data), 4, seed=3, hflip=True)
        for j in range(5):
            idx, flip = keys.batch_keys(j)
            want = torch.stack([data.load(i).flip(-1) if f else data.load(i)
                                for i, f in zip(idx.tolist(), flip.tolist(), strict=True)])
            assert torch.equal(b.next_raw(), want)


def test_batches_leave_the_global_rng_alone(tmp_path):
    # A DataLoader draws its base seed from the global RNG unless given a generator; then
    # the run's z (and so its checkpoints) would depend on the form of the data.
    write_images(tmp_path, 9, size=(16, 16))
    d = ImageFolder(str(tmp_path), res=16, hflip=True)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    b = Batches(d, 4, seed=0, device=torch.device("cpu"), workers=1)
    next(b)
    assert torch.equal(torch.get_rng_state(), before)


def test_every_data_set_implements_the_protocol(tmp_path):
    write_images(tmp_path, 2)
    sets = [Digits(16), Ring8(n=10), ImageFolder(str(tmp_path), res=16)]
    for d in sets:
        assert isinstance(d, DataSet), type(d)
    assert [d.is_image for d in sets] == [True, False, True]
    assert [d.in_memory for d in sets] == [True, True, False]
    assert Ring8(n=10).table().storage.shape == (10, 2)
