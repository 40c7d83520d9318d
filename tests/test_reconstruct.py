"""`ganqp reconstruct`: grid layouts checked tile by tile against the model, neighbour
search against brute force, latent export, folders of images, and bad input (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.config import make
from ganqp_cli.data import split_indices, to_uint8
from ganqp_cli.reconstruct import decode, encode, load_items, pick, with_split
from ganqp_cli.sampling import load_trained
from tests.conftest import TINY, write_images
from tests.encoder_runs import heldout_images, trained

# Tests here share the runs of tests/encoder_runs.py: one worker trains each once.
pytestmark = pytest.mark.xdist_group("encoder_runs")

RES, PAD = 16, 2


@pytest.fixture(scope="module")
def ogan(tmp_path_factory):
    return trained("o-gan", tmp_path_factory)


@pytest.fixture(scope="module")
def bigan(tmp_path_factory):
    return trained("bigan-qp", tmp_path_factory)


def tiles(path, rows: int, cols: int) -> np.ndarray:
    """A saved grid cut back into its (rows, cols, RES, RES) tiles."""
    arr = np.asarray(Image.open(path))
    assert arr.shape == (rows * RES + (rows + 1) * PAD, cols * RES + (cols + 1) * PAD)
    step = RES + PAD
    return np.stack([np.stack([arr[PAD + r * step:PAD + r * step + RES,
                                   PAD + c * step:PAD + c * step + RES] for c in range(cols)])
                     for r in range(rows)])


def u8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x)[:, 0].numpy()


def test_recon_grid_alternates_real_and_reconstructed(cli, ogan, tmp_path):
    out = tmp_path / "recon.png"
    r = cli("reconstruct", f"ckpt={ogan}", "n=6", "nrow=3", f"out={out}")
    assert r.code == 0, r
    assert "mean |x - x_hat|" in r.out
    run = load_trained(str(ogan))
    x = heldout_images(ogan)[pick(180, 6, 0)]  # split=auto: the held-out digits
    x_hat = decode(run, encode(run, x), 0.9)  # O-GAN's default temperature
    t = tiles(out, 2, 6)
    assert np.array_equal(t[:, 0::2].reshape(6, RES, RES), u8(x))
    assert np.array_equal(t[:, 1::2].reshape(6, RES, RES), u8(x_hat))
    # A different temperature decodes differently; BiGAN-QP decodes at 1.0 by default.
    r = cli("reconstruct", f"ckpt={ogan}", "n=6", "temperature=0.5", f"out={tmp_path / 'b.png'}")
    assert r.code == 0 and not np.array_equal(tiles(tmp_path / "b.png", 2, 6)[0, 1], t[0, 1])


def test_recon_of_a_folder_equals_recon_of_the_same_data(cli, bigan, tmp_path):
    x = heldout_images(bigan)[:5]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(u8(x)):
        Image.fromarray(img).save(folder / f"{i}.png")
    out = tmp_path / "f.png"
    r = cli("reconstruct", f"ckpt={bigan}", f"images={folder}", "n=5", "nrow=5", f"out={out}")
    assert r.code == 0, r
    run = load_trained(str(bigan))
    t = tiles(out, 1, 10)
    assert np.array_equal(t[0, 0::2], u8(x))
    assert np.array_equal(t[0, 1::2], u8(run.G(run.models.E(x)).detach()))  # G(E(x))


def test_interp_rows(cli, ogan, tmp_path):
    out = tmp_path / "interp.png"
    r = cli("reconstruct", f"ckpt={ogan}", "mode=interp", "n=4", "k=3", f"out={out}")
    assert r.code == 0, r
    run = load_trained(str(ogan))
    x = heldout_images(ogan)[pick(180, 4, 0)]
    recon = u8(decode(run, encode(run, x), 0.9))
    t = tiles(out, 2, 3 + 4)  # real, recon, 3 interpolants, recon, real
    assert np.array_equal(t[:, 0], u8(x[0::2])) and np.array_equal(t[:, -1], u8(x[1::2]))
    for row in range(2):  # the path starts and ends at the two reconstructions
        assert np.abs(t[row, 1].astype(int) - recon[2 * row]).max() <= 1
        assert np.abs(t[row, -2].astype(int) - recon[2 * row + 1]).max() <= 1
    assert not np.array_equal(t[0, 2], t[0, 1]) and not np.array_equal(t[0, 2], t[0, -2])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_neighbors_are_the_nearest_training_codes(cli, ogan, tmp_path, metric):
    out = tmp_path / "nn.png"
    r = cli("reconstruct", f"ckpt={ogan}", "mode=neighbors", "n=3", "k=4", f"metric={metric}",
            "pool=300", f"out={out}")
    assert r.code == 0, r
    run = load_trained(str(ogan))
    train = make(with_split(run.config.data, "train"), "data", res=RES)
    pool_idx = pick(len(train), 300, 1)
    pool = encode(run, load_items(train, pool_idx)).double()
    q = encode(run, heldout_images(ogan)[pick(180, 3, 0)]).double()
    if metric == "cosine":
        dist = 1 - torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(
            pool, dim=1).T
    else:
        dist = torch.cdist(q, pool)
    best = dist.sort(1).indices[:, :4]
    t = tiles(out, 5, 3)  # queries on top, then the 1st, 2nd, ... nearest below
    for j in range(3):
        expected = u8(load_items(train, [pool_idx[i] for i in best[j].tolist()]))
        assert np.array_equal(t[1:, j], expected)


def test_neighbors_of_training_images_skip_the_image_itself(cli, ogan, tmp_path):
    r = cli("reconstruct", f"ckpt={ogan}", "mode=neighbors", "split=train", "n=4", "k=2",
            "pool=2000", f"out={tmp_path / 'nn.png'}")
    assert r.code == 0, r
    t = tiles(tmp_path / "nn.png", 3, 4)
    for j in range(4):
        assert not np.array_equal(t[1, j], t[0, j]) and not np.array_equal(t[2, j], t[0, j])


def test_encode_writes_the_codes_of_a_split(cli, ogan, tmp_path):
    out = tmp_path / "z.npy"
    r = cli("reconstruct", f"ckpt={ogan}", "mode=encode", f"out={out}")
    assert r.code == 0, r
    z = np.load(out)
    run = load_trained(str(ogan))
    assert z.shape == (180, 16) and z.dtype == np.float32
    assert np.allclose(z, encode(run, heldout_images(ogan)).numpy(), atol=1e-5)
    assert np.allclose(z.mean(1), 0, atol=1e-5) and np.allclose(z.std(1), 1, atol=1e-4)
    r = cli("reconstruct", f"ckpt={ogan}", "mode=encode", "split=train", f"out={out}")
    assert r.code == 0 and np.load(out).shape == (1797 - 180, 16)
    # data= replaces the checkpoint's data config (here: all 1,797 digits, none held out).
    r = cli("reconstruct", f"ckpt={ogan}", "mode=encode", "data=digits", f"out={out}")
    assert r.code == 0 and np.load(out).shape == (1797, 16)


def test_held_out_split_is_fixed_and_disjoint():
    train, held = split_indices(1797, 0.1, "train"), split_indices(1797, 0.1, "heldout")
    assert len(held) == 180 and len(train) == 1617
    assert sorted(train.tolist() + held.tolist()) == list(range(1797))
    assert torch.equal(held, split_indices(1797, 0.1, "heldout"))
    assert torch.equal(split_indices(50, 0.0, "train"), torch.arange(50))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    from ganqp_cli.cli import main
    run = tmp_path_factory.mktemp("plain")
    main(["train", *TINY, f"hydra.run.dir={run}"])
    return run / "checkpoints" / "last.pt"


@pytest.mark.parametrize("args, words", [
    (["mode=bad"], ["mode='bad'", "recon, interp, neighbors, encode"]),
    (["metric=l3"], ["metric='l3'", "euclidean, cosine"]),
    (["n=0"], ["n=0", "whole number"]),
    (["images=/nonexistent/dir"], ["images=/nonexistent/dir", "not a directory"]),
    (["split=heldout", "data=digits"], ["split=heldout", "data.holdout"]),
    (["data=nosuch"], ["data=nosuch", "Valid options"]),
])
def test_bad_input_exits_2(cli, ogan, tmp_path, args, words):
    r = cli("reconstruct", f"ckpt={ogan}", *args, f"out={tmp_path / 'x.png'}")
    assert r.code == 2, r
    assert "Traceback" not in r.err and all(w in r.err for w in words), r.err
    assert not (tmp_path / "x.png").exists()


def test_checkpoint_without_an_encoder_exits_2(cli, plain, tmp_path):
    r = cli("reconstruct", f"ckpt={plain}", f"out={tmp_path / 'x.png'}")
    assert r.code == 2 and "objective=gan-qp" in r.err and "no encoder" in r.err, r
    r = cli("reconstruct", f"out={tmp_path / 'x.png'}")
    assert r.code == 2 and "ckpt is required" in r.err, r


def test_data_of_another_shape_names_the_fix(cli, ogan, tmp_path):
    write_images(tmp_path / "rgb", 3, size=(16, 16))
    r = cli("reconstruct", f"ckpt={ogan}", "data=folder", f"data.root={tmp_path / 'rgb'}",
            f"out={tmp_path / 'x.png'}")
    assert r.code == 2 and "(3, 16, 16)" in r.err and "data.channels=1" in r.err, r
    r = cli("reconstruct", f"ckpt={ogan}", "data=folder", f"data.root={tmp_path / 'rgb'}",
            "data.channels=1", "n=3", f"out={tmp_path / 'x.png'}")
    assert r.code == 0, r
