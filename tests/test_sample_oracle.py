"""`ganqp sample` against generators with a known output (tests/hand_models.py): every
pixel of its grids and folders is computed independently, in NumPy, from the seeded z."""

from __future__ import annotations

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
