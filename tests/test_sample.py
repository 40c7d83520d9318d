"""`ganqp sample`: grids, folders, interpolation, temperature, EMA, checkpoint errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.sampling import interpolation_latents, latents, load_trained, slerp
from tests.conftest import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ganqp_cli.cli import main
    run = tmp_path_factory.mktemp("run")
    main(["train", *TINY, f"hydra.run.dir={run}"])
    return run / "checkpoints" / "last.pt"


def test_grid(cli, trained, tmp_path):
    out = tmp_path / "grid.png"
    r = cli("sample", f"ckpt={trained}", "n=6", f"out={out}", "nrow=3")
    assert r.code == 0, r
    assert Image.open(out).size == (3 * 16 + 4 * 2, 2 * 16 + 3 * 2)


def test_folder_matches_generator_output(cli, trained, tmp_path):
    out = tmp_path / "folder"
    r = cli("sample", f"ckpt={trained}", "n=5", f"out={out}", "format=folder", "seed=7")
    assert r.code == 0, r
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"{i:06d}.png" for i in range(5)]
    run = load_trained(str(trained))
    with torch.no_grad():
        x = run.G(latents(5, run.z_dim, 7))
    expected = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    got = np.stack([np.asarray(Image.open(p)) for p in files])
    assert np.array_equal(got, expected)


def test_seed_temperature_and_ema_change_the_samples(cli, trained, tmp_path):
    def grid(*extra):
        out = tmp_path / f"{'_'.join(extra).replace('=', '-') or 'base'}.png"
        assert cli("sample", f"ckpt={trained}", "n=4", f"out={out}", *extra).code == 0
        return np.asarray(Image.open(out)).astype(int)

    base = grid()
    assert np.array_equal(base, grid())  # same seed, same grid
    for extra in (["seed=1"], ["temperature=0.5"], ["ema=false"]):
        assert not np.array_equal(base, grid(*extra))


def test_interpolation_rows(cli, trained, tmp_path):
    out = tmp_path / "interp.png"
    r = cli("sample", f"ckpt={trained}", "interp=true", "n=10", "interp_steps=5", f"out={out}")
    assert r.code == 0, r
    assert Image.open(out).size == (5 * 16 + 6 * 2, 2 * 16 + 3 * 2)


def test_slerp_endpoints_and_norm():
    z = interpolation_latents(3, 7, 16, seed=0, temperature=1.0).view(3, 7, 16)
    ends = latents(6, 16, 0)
    assert torch.allclose(z[:, 0], ends[:3], atol=1e-5)
    assert torch.allclose(z[:, -1], ends[3:], atol=1e-5)
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(a, b, torch.tensor([[0.5]]))
    assert torch.allclose(mid, torch.tensor([[2**-0.5, 2**-0.5]]), atol=1e-6)


@pytest.mark.parametrize("content", [b"garbage", None, "half"])
def test_bad_checkpoints_exit_2_naming_the_path(cli, trained, tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "half":
        data = trained.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    r = cli("sample", f"ckpt={path}", f"out={tmp_path / 'x.png'}")
    assert r.code == 2 and "bad.pt" in r.msg and "Traceback" not in r.err


def test_a_torch_file_that_is_not_a_checkpoint(cli, tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    r = cli("sample", f"ckpt={tmp_path / 'other.pt'}")
    assert r.code == 2 and "not a ganqp checkpoint" in r.msg


def test_missing_ckpt_key(cli):
    r = cli("sample")
    assert r.code == 2 and "ckpt is required" in r.msg
