"""`ganqp train`: few-iteration runs per arch, the run directory, exact resume."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli import checkpoint as ckpt
from tests.conftest import TINY, read_metrics


@pytest.mark.parametrize("arch", ["gan-qp", "dcgan"])
@pytest.mark.parametrize("res", [16, 32])
def test_each_arch_trains_and_writes_the_run_directory(cli, tmp_path, arch, res):
    run = tmp_path / "run"
    r = cli("train", *TINY, f"arch={arch}", f"res={res}", f"hydra.run.dir={run}")
    assert r.code == 0, r
    assert (run / ".hydra" / "config.yaml").is_file()
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [2, 4]
    for row in rows:
        assert {"iter", "d_loss", "g_loss", "img_per_s", "elapsed_s", "dT", "dist"} <= set(row)
        assert all(v is not None for v in row.values())  # finite (non-finite are written null)
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "iter_0000002.png", "iter_0000004.png"]
    img = Image.open(run / "samples" / "iter_0000004.png")
    assert img.size == (2 * res + 3 * 2, 2 * res + 3 * 2)  # 2x2 grid, 2 px padding
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["format"] == "ganqp-checkpoint" and state["iter"] == 4
    assert state["shape"] == [1, res, res]
    assert json.loads((run / "status.json").read_text())["status"] == "done"


def test_keep_ckpts_prunes_numbered_checkpoints(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "train.iters=6", "train.ckpt_every=1", "train.keep_ckpts=2",
            f"hydra.run.dir={run}")
    assert r.code == 0, r
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["iter_0000005.pt", "iter_0000006.pt", "last.pt"]


def _weights(path):
    return torch.load(path, weights_only=True)


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(cli, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*TINY, "train.ckpt_every=100", "train.sample_every=100", "data.hflip=true"]
    assert cli("train", *args, "train.iters=6", f"hydra.run.dir={one}").code == 0
    assert cli("train", *args, "train.iters=3", f"hydra.run.dir={two}").code == 0
    r = cli("train", *args, "train.iters=6", f"hydra.run.dir={two}")
    assert r.code == 0 and "resumed at iter 3" in r.out, r
    a, b = _weights(one / "checkpoints" / "last.pt"), _weights(two / "checkpoints" / "last.pt")
    for part in ("models", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert a["data"] == b["data"] and a["iter"] == b["iter"] == 6
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    # The metrics of the resumed run continue where the first part stopped.
    assert [row["iter"] for row in read_metrics(two)] == [2, 3, 4, 6]


def test_resume_from_explicit_path_into_a_new_directory(cli, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli("train", *TINY, f"hydra.run.dir={first}").code == 0
    r = cli("train", *TINY, "train.iters=6", f"resume={first}/checkpoints/last.pt",
            f"hydra.run.dir={second}")
    assert r.code == 0, r
    assert _weights(second / "checkpoints" / "last.pt")["iter"] == 6


def test_resume_with_a_different_architecture_is_refused(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *TINY, f"hydra.run.dir={run}").code == 0
    r = cli("train", *TINY, "arch.width=0.25", "train.iters=8", f"hydra.run.dir={run}")
    assert r.code == 2
    assert "arch.width differs" in r.msg and "0.125" in r.msg and "Traceback" not in r.err
    r = cli("train", *TINY, "objective=gan-qp-l2", "train.iters=8", f"hydra.run.dir={run}")
    assert r.code == 2 and "objective." in r.msg and "differs" in r.msg


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "version": 1, "iter": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies in the middle of torch.save

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_atomic({"format": ckpt.FORMAT, "version": 1, "iter": 2}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["iter"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoint_permissions_follow_the_umask(tmp_path, umask):
    """As any file the user writes (not mkstemp's 0600): a group sharing runs can read them."""
    old = os.umask(umask)
    try:
        ckpt.save_atomic({"format": ckpt.FORMAT, "version": 1, "iter": 1}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o666 & ~umask


def _generator_of(state: dict, part: str) -> torch.nn.Module:
    """The generator with the checkpoint's raw (`part="models"`) or EMA weights, built from
    the arch alone (not through ganqp_cli.sampling, whose choice is under test)."""
    from omegaconf import OmegaConf

    from ganqp_cli.config import make
    G = make(OmegaConf.create(state["config"]).arch, "arch").generator(tuple(state["shape"]))
    weights = state["models"] if part == "models" else {f"G.{k}": v
                                                        for k, v in state["ema"].items()}
    G.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("G.")})
    return G.eval()


def _grid_tiles(img: np.ndarray, n: int, res: int) -> np.ndarray:
    """The n tiles of a 2 px padded grid of n = k * k images."""
    k, step = int(round(n ** 0.5)), res + 2
    return np.stack([img[2 + r * step:2 + r * step + res, 2 + c * step:2 + c * step + res]
                     for r in range(k) for c in range(k)])


def test_ema_disabled_and_tensorboard_written(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tmp_path / "run"
    r = cli("train", *TINY, "train.ema=0", "logger=tensorboard", f"hydra.run.dir={run}")
    assert r.code == 0, r
    # TensorBoard holds what metrics.jsonl holds, at the same iterations (as float32).
    tb = EventAccumulator(str(run / "tb"))
    tb.Reload()
    rows = read_metrics(run)
    assert [row["iter"] for row in rows] == [2, 4]
    for key in ("d_loss", "g_loss", "dT", "img_per_s"):
        events = tb.Scalars(key)
        assert [e.step for e in events] == [2, 4]
        assert [e.value for e in events] == [float(np.float32(row[key])) for row in rows]
    images = tb.Images("samples")
    assert [e.step for e in images] == [2, 4]
    for event in images:
        png = np.asarray(Image.open(run / "samples" / f"iter_{event.step:07d}.png"))
        shown = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        assert shown.shape == (*png.shape, 3)
        assert all(np.array_equal(shown[..., c], png) for c in range(3))  # grey as RGB

    # train.ema=0: the sample grid is the raw generator's output on the fixed z (seed 0)...
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    z = torch.randn(4, state["z_dim"], generator=torch.Generator().manual_seed(0))
    grid = _grid_tiles(np.asarray(Image.open(run / "samples" / "iter_0000004.png")), 4, 16)

    def pixels(G: torch.nn.Module) -> np.ndarray:
        with torch.no_grad():
            x = G(z)[:, 0]
        return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()

    assert np.array_equal(grid, pixels(_generator_of(state, "models")))
    # ... not the never-updated EMA copy (which still holds the initial weights) ...
    assert not np.array_equal(grid, pixels(_generator_of(state, "ema")))
    # ... and `ganqp sample` draws from the raw generator whatever `ema=` says.
    ckpt_path = run / "checkpoints" / "last.pt"
    outs = [tmp_path / f"ema_{flag}.png" for flag in ("true", "false")]
    for flag, out in zip(("true", "false"), outs, strict=True):
        assert cli("sample", f"ckpt={ckpt_path}", "n=4", f"out={out}", f"ema={flag}").code == 0
    assert np.array_equal(np.asarray(Image.open(outs[0])), np.asarray(Image.open(outs[1])))


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path, capsys):
    from ganqp_cli.logger import RunLogger
    for console in (True, False):
        log = RunLogger(tmp_path / str(console), total=10, start=0, console=console)
        log.step(5)
        log.log(5, {"d_loss": -1.5, "g_loss": 2.25, "img_per_s": 100.0, "fid": float("nan")})
        log.close()
        row = read_metrics(tmp_path / str(console))[0]
        assert row == {"iter": 5, "d_loss": -1.5, "g_loss": 2.25, "img_per_s": 100.0, "fid": None}
    out = capsys.readouterr().out
    assert "100 img/s" in out  # the rich bar's rate column, with the last losses
    assert out.count("[      5/10] d_loss -1.5  g_loss 2.25  img_per_s 100") == 1  # plain line


def test_deterministic_algorithms_follow_each_run_of_the_process(cli, tmp_path):
    """train.deterministic is process-wide state: a run with it on must not leave it on for
    the next run of the same process (a sweep's jobs, the tests)."""
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        r = cli("train", *TINY, "train.iters=1", "train.deterministic=true",
                f"hydra.run.dir={tmp_path / 'on'}")
        assert r.code == 0, r
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        r = cli("train", *TINY, "train.iters=1", f"hydra.run.dir={tmp_path / 'off'}")
        assert r.code == 0, r
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
