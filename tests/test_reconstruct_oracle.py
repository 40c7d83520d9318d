"""`ganqp reconstruct` against encoder models with known networks (tests/hand_models.py):
E(x) = M pool4(x) and G(z) a known function, so every code, reconstruction, interpolant and
nearest neighbour is computed independently, in NumPy, from the input images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.hand_models import (
    assert_pixels,
    encoder_fn,
    generator_fn,
    linear_map,
    slerp,
    standardise,
    tiles,
    to_pixels,
    write_checkpoint,
)

L_RAW, L_EMA = linear_map(3, 16, 8, 0.6), linear_map(4, 16, 8, 0.6)
M = linear_map(5, 8, 16, 1.0)
N_IMAGES = 6
# objective -> (its code of x, its default decoding temperature)
MODELS = {"bigan-qp": (lambda x: encoder_fn(M, x), 1.0),
          "o-gan": (lambda x: standardise(encoder_fn(M, x)), 0.9)}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """N_IMAGES random grey 16 x 16 PNGs and their model inputs in [-1, 1]."""
    folder = tmp_path_factory.mktemp("images")
    pixels = np.random.default_rng(0).integers(0, 256, (N_IMAGES, 16, 16), dtype=np.uint8)
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"img_{i}.png")
    return folder, pixels, pixels / 127.5 - 1.0


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "hand.pt"
    code, temperature = MODELS[request.param]
    return write_checkpoint(path, request.param, L_RAW, L_EMA, M), code, temperature


def decoded(z: np.ndarray, L: np.ndarray = L_EMA) -> np.ndarray:
    return to_pixels(generator_fn(L, z))


def test_encode_writes_the_codes(cli, model, images, tmp_path):
    ckpt, code, _ = model
    folder, _, x = images
    out = tmp_path / "z.npy"
    r = cli("reconstruct", f"ckpt={ckpt}", "mode=encode", f"images={folder}", f"out={out}")
    assert r.code == 0, r
    np.testing.assert_allclose(np.load(out), code(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra, L, temperature", [
    ([], L_EMA, None),                       # EMA generator, the model's temperature
    (["ema=false"], L_RAW, None),
    (["temperature=0.5"], L_EMA, 0.5),
])
def test_recon_pairs_are_the_images_and_their_decoded_codes(cli, model, images, tmp_path,
                                                            extra, L, temperature):
    ckpt, code, default_t = model
    folder, pixels, x = images
    out = tmp_path / "recon.png"
    r = cli("reconstruct", f"ckpt={ckpt}", f"images={folder}", f"n={N_IMAGES}", "nrow=3",
            f"out={out}", *extra)
    assert r.code == 0, r
    t = tiles(out, 2, 6)  # 3 pairs a row: real, reconstruction, real, ...
    assert np.array_equal(t[:, 0::2].reshape(N_IMAGES, 16, 16), pixels)
    want = decoded((temperature or default_t) * code(x), L)
    assert_pixels(t[:, 1::2].reshape(N_IMAGES, 16, 16), want)


def test_interp_rows_slerp_between_the_codes_of_each_pair(cli, model, images, tmp_path):
    ckpt, code, temperature = model
    folder, pixels, x = images
    out = tmp_path / "interp.png"
    r = cli("reconstruct", f"ckpt={ckpt}", "mode=interp", f"images={folder}",
            f"n={N_IMAGES}", "k=2", f"out={out}")
    assert r.code == 0, r
    t = tiles(out, 3, 6)  # each pair (0, 1), (2, 3), (4, 5): real, 4 decodes, real
    assert np.array_equal(t[:, 0], pixels[0::2]) and np.array_equal(t[:, -1], pixels[1::2])
    a, b = code(x[0::2]), code(x[1::2])
    for step in range(4):
        assert_pixels(t[:, 1 + step], decoded(temperature * slerp(a, b, step / 3)))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_neighbors_are_the_nearest_codes_by_brute_force(cli, model, images, tmp_path, metric):
    ckpt, code, _ = model
    folder, pixels, x = images
    out = tmp_path / "nn.png"
    # Queries and pool are the same folder: each query's own image is left out.
    r = cli("reconstruct", f"ckpt={ckpt}", "mode=neighbors", "data=folder",
            f"data.root={folder}", "data.channels=1", "n=3", "k=2", f"metric={metric}",
            f"out={out}")
    assert r.code == 0, r
    t = tiles(out, 3, 3)  # queries on top, then their nearest and second nearest
    c = code(x)
    if metric == "cosine":
        u = c / np.linalg.norm(c, axis=1, keepdims=True)
        dist = 1 - u @ u.T
    else:
        dist = np.linalg.norm(c[:, None] - c[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    for j in range(3):
        (q,) = [i for i in range(N_IMAGES) if np.array_equal(pixels[i], t[0, j])]
        assert np.array_equal(t[1:, j], pixels[np.argsort(dist[q])[:2]])
