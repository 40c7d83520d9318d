"""`ganqp sample` against generators with a known output (tests/hand_models.py): every
pixel of its grids and folders is computed independently, in NumPy, from the seeded z."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.hand_models import (
    assert_pixels,
    generator_fn,
    linear_map,
    seeded_normal,
    slerp,
    tiles,
    to_pixels,
    write_checkpoint,
)

L_RAW = linear_map(1, 16, 8, 0.6)
L_EMA = linear_map(2, 16, 8, 0.6)


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("hand") / "hand.pt", "gan-qp", L_RAW, L_EMA)


def expected(L: np.ndarray, z: np.ndarray) -> np.ndarray:
    return to_pixels(generator_fn(L, z))


@pytest.mark.parametrize("extra, L, temperature", [
    ([], L_EMA, 1.0),                       # the EMA generator by default
    (["ema=false"], L_RAW, 1.0),
    (["temperature=0.5"], L_EMA, 0.5),      # z scaled by the temperature
])
def test_grid_is_the_generator_on_the_seeded_latents(cli, hand, tmp_path, extra, L,
                                                     temperature):
    out = tmp_path / "grid.png"
    r = cli("sample", f"ckpt={hand}", "n=6", "nrow=3", "seed=7", f"out={out}", *extra)
    assert r.code == 0, r
    assert "iter 1234" in r.out
    want = expected(L, temperature * seeded_normal(6, 7))
    assert_pixels(tiles(out, 2, 3).reshape(6, 16, 16), want)  # row by row
    # The test can tell the generators apart: the other one's pixels differ.
    other = expected(L_RAW if L is L_EMA else L_EMA, temperature * seeded_normal(6, 7))
    assert (np.abs(other.astype(int) - want).max()) > 20


def test_folder_in_batches_is_the_generator_on_the_seeded_latents(cli, hand, tmp_path):
    out = tmp_path / "folder"
    r = cli("sample", f"ckpt={hand}", "n=5", "format=folder", "seed=3", "batch=2",
            f"out={out}")
    assert r.code == 0, r
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"{i:06d}.png" for i in range(5)]
    got = np.stack([np.asarray(Image.open(p)) for p in files])
    assert_pixels(got, expected(L_EMA, seeded_normal(5, 3)))


def test_interpolation_rows_are_slerps_between_seeded_ends(cli, hand, tmp_path):
    out = tmp_path / "interp.png"
    r = cli("sample", f"ckpt={hand}", "interp=true", "n=8", "interp_steps=4", "seed=5",
            f"out={out}")
    assert r.code == 0, r
    ends = seeded_normal(4, 5)  # rows = n // steps = 2: starts ends[:2], ends ends[2:]
    got = tiles(out, 2, 4)
    for step in range(4):
        z = slerp(ends[:2], ends[2:], step / 3)
        assert_pixels(got[:, step], expected(L_EMA, z))


# ---- a class-conditional model: G(z, y) = generator_fn(L, [z; E[y]]) -------------------------
CLASSES = ["cat", "dog", "emu"]
LC_RAW, LC_EMA = linear_map(3, 16, 16, 0.45), linear_map(4, 16, 16, 0.45)
E_RAW, E_EMA = linear_map(5, 3, 8, 1.0), linear_map(6, 3, 8, 1.0)


@pytest.fixture(scope="module")
def hand_cond(tmp_path_factory):
    from tests.hand_models import write_conditional_checkpoint
    return write_conditional_checkpoint(tmp_path_factory.mktemp("hand") / "cond.pt", LC_RAW,
                                        LC_EMA, E_RAW, E_EMA, CLASSES, [5, 0, 2])


def expected_cond(z: np.ndarray, labels: list[int], L=LC_EMA, E=E_EMA) -> np.ndarray:
    return to_pixels(generator_fn(L, np.concatenate([z, E[labels]], 1)))


def test_class_grid_has_a_row_per_class_with_shared_codes(cli, hand_cond, tmp_path):
    out = tmp_path / "grid.png"
    r = cli("sample", f"ckpt={hand_cond}", "n=7", "seed=2", f"out={out}")
    assert r.code == 0 and "rows: classes cat, dog, emu" in r.out, r
    z = seeded_normal(7, 2)[:2]  # 7 // 3 = 2 columns: the first two codes in every row
    got = tiles(out, 3, 2)
    for k in range(3):
        assert_pixels(got[k], expected_cond(z, [k, k]))
    other = expected_cond(z, [0, 0], LC_RAW, E_RAW)  # the raw generator's differ
    assert np.abs(other.astype(int) - expected_cond(z, [0, 0])).max() > 20
    out2 = tmp_path / "chosen.png"
    r = cli("sample", f"ckpt={hand_cond}", "n=4", "seed=2", "classes=[emu,0]", "ema=false",
            f"out={out2}")
    assert r.code == 0, r
    got = tiles(out2, 2, 2)
    assert_pixels(got[0], expected_cond(z, [2, 2], LC_RAW, E_RAW))
    assert_pixels(got[1], expected_cond(z, [0, 0], LC_RAW, E_RAW))


def test_one_class_and_interpolation_within_it(cli, hand_cond, tmp_path):
    out = tmp_path / "dog.png"
    r = cli("sample", f"ckpt={hand_cond}", "class=dog", "n=4", "nrow=2", "seed=9",
            f"out={out}")
    assert r.code == 0, r
    assert_pixels(tiles(out, 2, 2).reshape(4, 16, 16),
                  expected_cond(seeded_normal(4, 9), [1] * 4))
    out = tmp_path / "interp.png"
    r = cli("sample", f"ckpt={hand_cond}", "class=2", "interp=true", "n=6", "interp_steps=3",
            "seed=5", f"out={out}")
    assert r.code == 0, r
    ends, got = seeded_normal(4, 5), tiles(out, 2, 3)
    for step in range(3):
        assert_pixels(got[:, step], expected_cond(slerp(ends[:2], ends[2:], step / 2), [2, 2]))


def test_folder_writes_the_labels_of_its_images(cli, hand_cond, tmp_path):
    out = tmp_path / "folder"
    r = cli("sample", f"ckpt={hand_cond}", "n=9", "format=folder", "seed=4", "batch=4",
            f"out={out}")
    assert r.code == 0 and "dataset.json" in r.out, r
    doc = json.loads((out / "dataset.json").read_text())
    names = [name for name, _ in doc["labels"]]
    labels = [k for _, k in doc["labels"]]
    assert names == [f"{i:06d}.png" for i in range(9)]
    assert set(labels) <= {0, 2}  # drawn with the training data's counts: dog had none
    got = np.stack([np.asarray(Image.open(out / name)) for name in names])
    assert_pixels(got, expected_cond(seeded_normal(9, 4), labels))
    # the folder reads back as a labelled data set, its labels those of the file
    from ganqp_cli.data import ImageFolder
    folder = ImageFolder(str(out), 16, channels=1)
    assert folder.labels().tolist() == labels
    assert doc["classes"] == folder.classes == CLASSES  # dog too, which drew no sample
