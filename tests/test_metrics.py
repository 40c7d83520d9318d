"""The metrics beyond FID against their reference packages on the same arrays: precision,
recall, density, coverage against `prdc`; the Inception Score against torch-fidelity;
clean resizing against clean-fid; logits and features of both extractors against the
networks run plainly; statistics files written concurrently; extraction precision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ganqp_cli.data import Digits
from ganqp_cli.metrics import prdc as P
from ganqp_cli.metrics import registry as R
from ganqp_cli.metrics.digits import digits_input
from ganqp_cli.metrics.extractor_base import Extractor
from ganqp_cli.metrics.extractors import make_extractor
from ganqp_cli.metrics.inception_score import inception_score
from ganqp_cli.metrics.reference import stats_key
from ganqp_cli.metrics.resize import clean_resize
from ganqp_cli.metrics.stats import Stats
from tests.conftest import seeded_inception_weights

ROOT = Path(__file__).resolve().parents[1]
FID_DEFAULTS = OmegaConf.load(ROOT / "conf" / "fid" / "default.yaml")


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real: a wide Gaussian; fake: a narrow one off-centre, so that precision (fakes inside
    the real manifold) is high and recall (reals inside the fake manifold) low: a swap of
    the sides shows."""
    rng = np.random.RandomState(seed)
    real = rng.randn(300, 16).astype(np.float32)
    fake = (0.3 * rng.randn(200, 16) + 0.4).astype(np.float32)
    return real, fake


def test_prdc_equals_the_prdc_package_and_keeps_the_sides(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from prdc import compute_prdc
    real, fake = clusters()
    ours = P.prdc(real, fake, ks=(3, 5))
    for k in (3, 5):
        theirs = compute_prdc(real, fake, nearest_k=k)
        for key in ("precision", "recall", "density", "coverage"):
            assert ours[k][key] == pytest.approx(float(theirs[key]), abs=1e-6), (k, key)
    assert ours[3]["precision"] > 0.9 and ours[3]["recall"] < 0.3  # real is the first side
    # many small chunks (as 10k x 10k takes) give the same numbers bit for bit
    monkeypatch.setattr(P, "CHUNK_ELEMENTS", 1000)
    assert P.prdc(real, fake, ks=(3, 5)) == ours


def test_prdc_equals_the_prdc_package_in_2048_dimensions() -> None:
    """Distances concentrate in 2048-d: near-ties are decided by prdc's float32 rounding of
    the distances (exact float64 comparisons differ here: density at k=3 by 1/3000)."""
    from prdc import compute_prdc
    rng = np.random.RandomState(1)
    real = rng.randn(1000, 2048).astype(np.float32)
    fake = (rng.randn(1000, 2048) * 0.97).astype(np.float32)
    ours = P.prdc(real, fake, ks=(3,))[3]
    theirs = compute_prdc(real, fake, nearest_k=3)
    assert ours == pytest.approx({k: float(v) for k, v in theirs.items()}, abs=1e-6)


def test_registry_pr_and_dc_use_their_own_k_and_cached_reference_radii() -> None:
    from prdc import compute_prdc
    real, fake = clusters(1)
    fc = OmegaConf.merge(FID_DEFAULTS, {"pr_k": 2, "dc_k": 4})
    ref = Stats.of(real)
    inp = R.Inputs(Stats.of(fake), ref, None, fc)
    got = R.compute(R.selected(["pr", "dc"]), inp)
    pr, dc = compute_prdc(real, fake, nearest_k=2), compute_prdc(real, fake, nearest_k=4)
    assert got == pytest.approx({"precision": pr["precision"], "recall": pr["recall"],
                                 "pr_k": 2, "density": dc["density"],
                                 "coverage": dc["coverage"], "dc_k": 4}, abs=1e-6)
    assert len(ref.memo) == 1  # the reference's radii, kept for the next evaluation
    again = R.compute(R.selected(["pr", "dc"]), R.Inputs(Stats.of(fake), ref, None, fc))
    assert again == got
    # a bare pytorch-fid .npz reference (no features): no k-NN metrics, no error
    bare = Stats(ref.mu, ref.sigma, ref.n)
    none = R.compute(R.selected(["pr"]), R.Inputs(Stats.of(fake), bare, None, fc))
    assert none == {"precision": None, "recall": None, "pr_k": None}


def test_inception_score_equals_torch_fidelity_and_closed_forms() -> None:
    from torch_fidelity.metric_isc import isc_features_to_metric
    rng = np.random.RandomState(0)
    for n, classes in ((103, 1008), (250, 10)):
        logits = (3 * rng.randn(n, classes)).astype(np.float32)
        theirs = isc_features_to_metric(torch.from_numpy(logits), splits=10)
        mean, std = inception_score(logits, splits=10)
        assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
        assert std == pytest.approx(theirs["inception_score_std"], rel=1e-8)
        assert mean > 1.5
    # one prediction for every sample: IS = 1; confident and balanced over C classes: IS = C
    assert inception_score(np.zeros((40, 10), np.float32), 4) == pytest.approx((1.0, 0.0))
    sure = np.tile(np.eye(10, dtype=np.float32) * 60, (8, 1))
    mean, _ = inception_score(sure, splits=2, shuffle=False)  # each split: 4 of each class
    assert mean == pytest.approx(10.0, rel=1e-9)


def test_clean_resize_equals_clean_fid() -> None:
    from cleanfid.resize import build_resizer, make_resizer
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 20, 24), generator=g, dtype=torch.uint8)
    ours = clean_resize(images, 299).numpy()
    resize = build_resizer("clean")
    for img, got in zip(images.numpy(), ours, strict=True):
        want = resize(img.transpose(1, 2, 0)).transpose(2, 0, 1)
        assert got.dtype == np.float32 and np.array_equal(got, want)
    down = torch.randint(0, 256, (2, 3, 64, 64), generator=g, dtype=torch.uint8)
    to16 = make_resizer("PIL", False, "bicubic", (16, 16))  # the digits extractor's size
    for img, got in zip(down.numpy(), clean_resize(down, 16).numpy(), strict=True):
        assert np.array_equal(got, to16(img.transpose(1, 2, 0)).transpose(2, 0, 1))


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    home = tmp_path_factory.mktemp("torch")
    return SimpleNamespace(home=home, path=seeded_inception_weights(home))


def pooled(t: torch.Tensor) -> torch.Tensor:
    """A block's output as pytorch-fid's get_activations turns it into features."""
    return torch.nn.functional.adaptive_avg_pool2d(t, 1).flatten(1)


def test_inception_features_and_logits_equal_pytorch_fid_in_one_pass(
        inception_weights: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_fid.inception import InceptionV3
    monkeypatch.setenv("TORCH_HOME", str(inception_weights.home))
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    theirs = InceptionV3([0, 3]).eval()  # blocks 0 (64-d) and 3 (pool3), bilinear resize
    state = torch.load(inception_weights.path, weights_only=True)
    with torch.no_grad():
        f64, pool3 = (pooled(t) for t in theirs(images.float() / 255))
    ours = make_extractor("inception", 64)
    feats, logits = ours.features_and_logits(images)
    assert torch.allclose(feats, f64, rtol=1e-4, atol=1e-5)
    assert logits.shape == (2, 1008)
    assert torch.allclose(logits, pool3 @ state["fc.weight"].T, rtol=1e-4, atol=1e-5)
    assert torch.equal(ours(images), feats)
    # clean resize: pytorch-fid's network on clean-fid's resized images
    clean = make_extractor("inception", 64, resize="clean")
    plain = InceptionV3([0], resize_input=False).eval()
    with torch.no_grad():
        want = pooled(plain(clean_resize(images, 299) / 255)[0])
    assert torch.allclose(clean(images), want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(clean(images), feats, rtol=1e-2)


def test_digits_features_and_logits_are_the_classifiers() -> None:
    ext = make_extractor("digits")
    images = Digits(res=32).tensor[:50]
    feats, logits = ext.features_and_logits(images)
    x = digits_input(images)
    with torch.no_grad():
        assert torch.equal(logits, ext.net(x))
        assert torch.equal(feats, ext.net.features(x) * ext.scale)
    from sklearn.datasets import load_digits
    labels = torch.from_numpy(load_digits().target[:50])
    assert (logits.argmax(1) == labels).float().mean() > 0.9
    assert torch.equal(ext(images), feats)


def test_building_an_extractor_leaves_the_global_random_state_alone() -> None:
    """Its layers draw initial weights before the trained ones are loaded: without a fork of
    the generator, a run with FID on would train differently from one without."""
    from ganqp_cli.metrics import extractors
    extractors._BUILT.clear()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    make_extractor("digits")
    assert torch.equal(torch.get_rng_state(), before)


class Recorder(Extractor):
    """Records the backend flags it runs under."""

    name, dims, n_classes, weights_id = "recorder", 1, 1, "none"

    def __init__(self, tf32: bool) -> None:
        super().__init__("legacy", tf32)
        self.seen: list[tuple[bool, bool, bool]] = []

    def _run(self, images: torch.Tensor, logits: bool) -> tuple[torch.Tensor, None]:
        b = torch.backends
        self.seen.append((b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark))
        return images.float().mean((1, 2, 3))[:, None], None


@pytest.mark.parametrize("before", [(True, True, True), (False, False, False)])
def test_extraction_runs_without_tf32_and_benchmark_then_restores(before) -> None:
    b = torch.backends
    saved = b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark
    try:
        b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark = before
        fp32, tf32 = Recorder(False), Recorder(True)
        x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
        fp32(x)
        tf32(x)
        assert fp32.seen == [(False, False, False)] and tf32.seen == [(True, True, False)]
        assert (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark) == before
    finally:
        b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark = saved


def test_cache_key_names_resize_and_tf32() -> None:
    ext = make_extractor("digits")
    info = {"data": "digits", "res": 16, "root": ""}
    keys = {stats_key(info, 100, e) for e in (
        ext, make_extractor("digits", resize="clean"), make_extractor("digits", tf32=True))}
    assert len(keys) == 3
    assert stats_key(info, 100, ext).startswith("digits-16px-n100-digits64-")
    assert "-legacy-fp32-" in stats_key(info, 100, ext)


SAVER = """
import sys, numpy as np
from pathlib import Path
from ganqp_cli.metrics.stats import Stats
feats = np.random.RandomState(int(sys.argv[2])).rand(3000, 64).astype(np.float32)
s = Stats.of(feats, {"writer": int(sys.argv[2])})
for _ in range(int(sys.argv[3])):
    s.save(Path(sys.argv[1]))
"""


def test_two_processes_saving_one_statistics_file_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "stats.npz"
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(w), "25"],
                              stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    got = Stats.load(path)
    want = np.random.RandomState(got.meta["writer"]).rand(3000, 64).astype(np.float32)
    assert np.array_equal(got.features, want)
    assert [p.name for p in path.parent.iterdir()] == ["stats.npz"]  # no temporary left
