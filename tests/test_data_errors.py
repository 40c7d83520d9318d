"""Bad data: image modes, unreadable and oversized images, data.on_error, validate_data, and
data behaviour that had no test (mixed sizes, missing MNIST, JPEG draft decoding, a corrupt
image found mid-run)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from ganqp_cli.data import (
    Batches,
    ImageFolder,
    StreamSampler,
    is_image_shape,
    read_image,
    replacement_rows,
    square_resize,
    to_8bit,
    validate_data,
)
from ganqp_cli.errors import UserError
from tests.conftest import TINY, write_images

CPU = torch.device("cpu")


def _px(img, channels=3):
    return np.asarray(to_8bit(img, channels)).tolist()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(path, width, height, depth, color, rows: bytes):
    """A PNG written by hand (PIL cannot write 16-bit RGB): `rows` is the raw scanline data
    without filter bytes."""
    line = len(rows) // height
    raw = b"".join(b"\0" + rows[i * line:(i + 1) * line] for i in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color,
                                                       0, 0, 0))
                     + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


# ---- 8-bit conversion of every mode, exact values ------------------------------------------

def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = [0, 65535, 257, 128, 32767, 32768, 385, 386, 65406]
    _png(tmp_path / "g16.png", len(values), 1, 16, 0, struct.pack(f">{len(values)}H", *values))
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")
        # round(v / 257): 65535 -> 255, 257 -> 1, 32767 -> 127.498, 32768 -> 127.502
        # (PIL's own convert clips instead: 0, 255, 255, 128, 255, ...)
        expected = [0, 255, 1, 0, 127, 128, 1, 2, 254]
        assert _px(img, 1) == [expected]
        assert _px(img, 3) == [[[v] * 3 for v in expected]]


def test_16_bit_rgb_png_keeps_the_high_byte(tmp_path):
    # PIL itself reads 16-bit RGB as 8-bit, keeping each sample's high byte
    _png(tmp_path / "rgb16.png", 1, 1, 16, 2, struct.pack(">3H", 0xFFFF, 0x8012, 0x01FF))
    assert read_image(tmp_path / "rgb16.png", 1, 3)[:, 0, 0].tolist() == [255, 128, 1]


def test_palette_gray_alpha_cmyk_and_bilevel_modes_convert_exactly():
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.putpixel((1, 0), 1)
    assert _px(p) == [[[10, 20, 30], [200, 100, 50]]]
    assert _px(p, 1) == [[18, 124]]  # ITU-R 601-2 luma: (299 R + 587 G + 114 B) / 1000
    assert _px(Image.new("RGBA", (1, 1), (10, 20, 30, 0))) == [[[10, 20, 30]]]  # alpha dropped
    assert _px(Image.new("LA", (1, 1), (100, 50))) == [[[100, 100, 100]]]
    assert _px(Image.new("LA", (1, 1), (100, 50)), 1) == [[100]]
    assert _px(Image.new("RGB", (1, 1), (200, 100, 50)), 1) == [[124]]  # 124.2
    assert _px(Image.new("CMYK", (1, 1), (255, 0, 0, 0))) == [[[0, 255, 255]]]
    assert _px(Image.new("CMYK", (1, 1), (0, 0, 0, 128))) == [[[127, 127, 127]]]
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    assert _px(bits) == [[[0, 0, 0], [255, 255, 255]]]


# ---- unreadable images -----------------------------------------------------------------------

def _bomb(path):
    """A PNG header declaring 20000 x 10000 pixels (no pixel data needed: PIL refuses at open)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 0, 0, 0, 0))
                     + _png_chunk(b"IEND", b""))


def test_decompression_bomb_is_a_named_exit_2_or_skipped(cli, tmp_path):
    write_images(tmp_path / "imgs", 3)
    _bomb(tmp_path / "imgs" / "huge.png")
    args = [*TINY, "data=folder", f"data.root={tmp_path / 'imgs'}", "train.batch_size=4",
            "train.iters=1"]
    r = cli("train", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 2, r
    assert "huge.png" in r.msg and "decompression bomb" in r.msg and "Traceback" not in r.err
    r = cli("train", *args, "data.on_error=skip", f"hydra.run.dir={tmp_path / 'skip'}")
    assert r.code == 0, r
    assert "skipping unreadable image" in r.err and "huge.png" in r.err


def _folder_with_bad(tmp_path, n=10, bad=(3, 4, 9)):
    paths = write_images(tmp_path / "imgs", n, size=(16, 16))
    for i in bad:
        paths[i].write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return paths


def test_skip_replaces_by_the_next_readable_item_cyclically(tmp_path):
    _folder_with_bad(tmp_path)
    d = ImageFolder(str(tmp_path / "imgs"), res=16, on_error="skip")
    assert [d.fetch(i)[1] for i in range(10)] == [0, 1, 2, 5, 5, 5, 6, 7, 8, 0]
    assert torch.equal(d.load(3), d.load(5)) and torch.equal(d.load(9), d.load(0))
    bad = torch.zeros(10, dtype=torch.bool)
    bad[[3, 4, 9]] = True
    assert replacement_rows(bad).tolist() == [d.fetch(i)[1] for i in range(10)]
    with pytest.raises(UserError, match="img_003.png.*data.on_error=skip"):
        ImageFolder(str(tmp_path / "imgs"), res=16).load(3)


def test_skip_counts_and_logs_once_with_worker_processes(tmp_path):
    _folder_with_bad(tmp_path)
    d = ImageFolder(str(tmp_path / "imgs"), res=16, hflip=True, on_error="skip")
    keys = StreamSampler(10, 5, seed=0, hflip=True)
    expected = sum(sum(i in (3, 4, 9) for i in keys.batch_keys(j)[0].tolist()) for j in range(6))
    streams = {}
    for workers in (0, 2):
        logged = []
        b = Batches(d, 5, seed=0, device=CPU, workers=workers, log=logged.append)
        streams[workers] = [next(b) for _ in range(6)]
        assert b.pop_stats() == {"data_skipped": float(expected)} and expected >= 6
        assert b.pop_stats() == {"data_skipped": 0.0}
        assert len(logged) == 3  # one line per unreadable file, however often drawn
        assert sorted(s.split("img_")[1][:3] for s in logged) == ["003", "004", "009"]
    for x, y in zip(*streams.values(), strict=True):
        assert torch.equal(x, y)


def test_corrupt_image_found_mid_run_fails_cleanly_and_resumes(cli, tmp_path):
    paths = write_images(tmp_path / "imgs", 40, size=(16, 16))
    # The item first drawn at stream position 30: batch 7, so iteration 3 (3 batches each)
    victim = paths[int(StreamSampler(40, 4, seed=0).batch_keys(7)[0][2])]
    good = victim.read_bytes()
    victim.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run = tmp_path / "run"
    args = [*TINY, "data=folder", f"data.root={tmp_path / 'imgs'}", "train.batch_size=4",
            "train.iters=4", "train.ckpt_every=1", "train.log_every=1", f"hydra.run.dir={run}"]
    r = cli("train", *args)
    assert r.code == 2 and victim.name in r.msg and "Traceback" not in r.err, r
    # What a mid-run failure leaves: the run directory with status "failed" at the last
    # completed iteration, its checkpoint, metrics and samples (so the run resumes).
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and status["iter"] == 2
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iter"] == 2
    victim.write_bytes(good)
    r = cli("train", *args)
    assert r.code == 0 and "resumed at iter 2" in r.out, r


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "message"), [
    ("channels", 2, "data.channels=2 is not valid: one of 1, 3"),
    ("on_error", "ignore", "data.on_error='ignore' is not valid: one of error, skip"),
    ("hflip", "yes", "data.hflip='yes' is not valid: true or false"),
    ("holdout", 1.0, "data.holdout=1.0 is not valid"),
    ("split", "test", "data.split='test' is not valid: one of train, heldout"),
    ("root", "/no/such/dir", "data.root=/no/such/dir is not a directory"),
    ("root", "???", "data.root is required but not set"),
])
def test_validate_data_names_the_key(tmp_path, key, value, message):
    node = OmegaConf.create({"_target_": "ganqp_cli.data.open_images", "name": "folder",
                             "root": str(tmp_path), "hflip": False, "channels": 3,
                             "holdout": 0.0, "split": "train", "on_error": "error"})
    validate_data(node)
    node[key] = value
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("?", r"\?")):
        validate_data(node)


def test_validate_data_knows_files_download_and_points(tmp_path):
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(UserError, match="is a file, not a directory"):
        validate_data(OmegaConf.create({"root": str(tmp_path / "f.png")}))
    validate_data(OmegaConf.create({"root": str(tmp_path / "new"), "download": True}))
    with pytest.raises(UserError, match="data.std=0 is not valid"):
        validate_data(OmegaConf.create({"name": "ring8", "n": 10, "std": 0}))


def test_bad_channels_on_the_command_line_is_exit_2(cli, tmp_path):
    write_images(tmp_path / "imgs", 4)
    r = cli("prepare", "data=folder", f"data.root={tmp_path / 'imgs'}", "data.channels=2",
            "res=16", f"out={tmp_path / 'out'}")
    assert r.code == 2 and "data.channels=2" in r.msg and "Traceback" not in r.err, r


def test_missing_mnist_is_exit_2(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("train", *TINY, "data=mnist", f"data.root={tmp_path / 'empty'}",
            f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 2 and "data.download=true" in r.msg and "Traceback" not in r.err, r
    assert not (tmp_path / "run").exists()


# ---- decoding behaviour ------------------------------------------------------------------------

def test_mixed_sizes_give_one_shape_and_exact_solid_colours(tmp_path):
    sizes = [(7, 5), (16, 16), (40, 24), (24, 40), (300, 17), (1000, 1000)]
    for k, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (10 * k, 200, 255 - k)).save(tmp_path / f"{k}.png")
    d = ImageFolder(str(tmp_path), res=16)
    batch = next(Batches(d, 6, seed=0, device=CPU, workers=0))
    assert batch.shape == (6, 3, 16, 16)
    for k in range(len(sizes)):  # a resize (up or down) of a solid colour is that colour
        x = d.load(k)
        assert x.shape == (3, 16, 16)
        assert x[:, 0, 0].tolist() == [10 * k, 200, 255 - k] and (x == x[:, :1, :1]).all()


def test_jpeg_draft_decode_matches_a_full_decode_closely(tmp_path):
    yy, xx = np.mgrid[0:768, 0:1024].astype(np.float32)
    arr = np.stack([128 + 100 * np.sin(xx / 60), 128 + 100 * np.cos(yy / 45),
                    255 * xx / 1024], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    for channels in (3, 1):
        with Image.open(tmp_path / "big.jpg") as img:
            fast = square_resize(img, 64, channels)
            assert img.size == (128, 96)  # the decoder really worked at 1/8 scale
        with Image.open(tmp_path / "big.jpg") as img:
            full = square_resize(img, 64, channels, draft=False)
        diff = (fast.float() - full.float()).abs()
        # measured: mean 0.31-0.36 levels, max 2 (a full decode is the reference)
        assert diff.mean() < 0.5 and diff.max() <= 3, (channels, diff.mean(), diff.max())


def test_is_image_shape():
    assert is_image_shape((3, 64, 64)) and is_image_shape([1, 16, 16])
    assert not is_image_shape((2,)) and not is_image_shape([8])
