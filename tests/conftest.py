"""Shared test helpers: run `ganqp` in-process (the real CLI path, minus the interpreter
start-up) and tiny-run settings that keep the suite fast on a CPU."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.cli import main

# Tiny networks gain nothing from intra-op threads, and on a loaded 2-core machine OpenMP
# threads spin against each other (10x slower); subprocesses inherit the env setting.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
# Caches (digits classifier, FID reference statistics) always go to a fresh per-session
# folder: never a user's ~/.cache/ganqp or the GANQP_CACHE of the calling shell, which tests
# would otherwise read stale entries from and write into.
CACHE = tempfile.mkdtemp(prefix="ganqp_test_cache_")
os.environ["GANQP_CACHE"] = CACHE
atexit.register(shutil.rmtree, CACHE, ignore_errors=True)

# A few-iteration digits run at 16 px with tiny networks.
TINY = ["res=16", "arch.width=0.125", "train.batch_size=16", "train.iters=4",
        "train.log_every=2", "train.sample_every=2", "train.ckpt_every=2", "train.sample_n=4",
        "train.workers=0"]


class CLIResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err
        self.msg = " ".join(err.split())  # stderr with line wrapping undone

    def __repr__(self) -> str:
        return f"CLIResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


# Learning runs of more than ~20 s of CPU each (the ring8 rows of 1,500 iterations and more,
# issue 17's ring8 and resnet rows) run only with GANQP_LONG_TESTS=1, so that `pytest` stays
# within minutes on 2 cores; the short learning rows of every objective family always run.
LONG = os.environ.get("GANQP_LONG_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LONG:
        return
    skip = pytest.mark.skip(reason="a long learning run: GANQP_LONG_TESTS=1 runs it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """train.threads=1 sets torch's global thread count; give the rest of the session back
    its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture) -> Callable[..., CLIResult]:
    """cli("train", "res=16", ...) -> CLIResult(code, stdout, stderr)."""

    def run(*args: str) -> CLIResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CLIResult(code, captured.out, captured.err)

    return run


ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, cwd: Path | None = None, script: str | None = None,
             env: dict[str, str] | None = None, agent: tuple[str, ...] = (),
             timeout: float = 600) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 [agent...] (-m ganqp_cli | script) args`:
    2 gloo ranks of one thread each, this checkout first on their path. --standalone picks
    a free port itself (--master_port=0 hangs on some machines)."""
    target = [script] if script else ["-m", "ganqp_cli"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", *agent, *target, *args]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=full_env)


def seeded_inception_weights(home: Path) -> Path:
    """Seeded random FID Inception weights, saved where pytorch-fid and ganqp look for the
    real file (which cannot be downloaded here) under TORCH_HOME=home; TORCH_HOME is left
    as it was."""
    from ganqp_cli.metrics.inception import hub_weights_file, random_inception_weights
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        return random_inception_weights(hub_weights_file(), seed=0)
    finally:
        if old is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = old


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def write_images(folder: Path, n: int, size: tuple[int, int] = (24, 20), seed: int = 0,
                 mode: str = "RGB", ext: str = "png") -> list[Path]:
    """n random images (not square, to exercise the centre crop) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    channels = 3 if mode == "RGB" else 1
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        p = folder / f"img_{i:03d}.{ext}"
        Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode).save(p)
        paths.append(p)
    return paths


def assert_same_state(a: object, b: object, where: str = "state") -> None:
    """Bitwise equality of two checkpoint (sub)trees: the same keys, lengths and dtypes, equal
    tensors, equal other values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_encoder_models_build(arch) -> None:  # noqa: ANN001 - any arch
    """BiGAN-QP, O-GAN and GAN-QP's pair critic build on `arch` (z_dim 8) for 16-px grey
    images, with the shapes their losses read."""
    from ganqp_cli.objectives import GANQP, OGAN, BiGANQP
    shape = (1, 16, 16)
    x, z = torch.rand(4, *shape) * 2 - 1, torch.randn(4, 8)
    m = BiGANQP(hidden=16).build(arch, shape)
    assert m.E(x).shape == (4, 8) and m.D(x, z).shape == (4, 1)
    m = OGAN().build(arch, shape)
    assert m.D is m.encoder and m.D(x).shape == (4, 8)
    obj = GANQP(critic="pair", pair_hidden=16)
    m = obj.build(arch, shape)
    assert obj.delta(m, x, m.G(z)).shape == (4,)
