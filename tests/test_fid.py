"""`ganqp fid`: agreement with pytorch-fid, KID against NumPy, statistics files, cache, errors.

The FID Inception weights cannot be downloaded here: seeded random weights of the same
structure are saved where pytorch-fid looks for its file (a temporary TORCH_HOME), and both
tools read them from there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.cli import main
from ganqp_cli.data import Digits
from ganqp_cli.metrics.digits import train_digits_classifier
from ganqp_cli.metrics.extractors import make_extractor
from ganqp_cli.metrics.frechet import frechet_distance
from ganqp_cli.metrics.kid import kid, kid_subsets
from ganqp_cli.metrics.stats import Stats
from tests.conftest import seeded_inception_weights


def write_folders(root: Path, n: int) -> tuple[Path, Path]:
    """A: smooth RGB noise; B: grayscale digits; both 32x32 PNGs."""
    a, b = root / "A", root / "B"
    a.mkdir()
    b.mkdir()
    g = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32,
                                            mode="bilinear")
    digits = Digits(res=32).tensor
    for i in range(n):
        arr = (noise[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(a / f"{i:03d}.png")
        Image.fromarray(digits[i, 0].numpy()).save(b / f"{i:03d}.png")
    return a, b


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("fid")
    torch_home = root / "torch"
    weights = seeded_inception_weights(torch_home)
    a, b = write_folders(root, 10)
    return SimpleNamespace(root=root, torch_home=torch_home, cache=root / "cache", a=a, b=b,
                           weights=weights)


@pytest.fixture(autouse=True)
def isolated(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(env.torch_home))
    monkeypatch.setenv("GANQP_CACHE", str(env.cache))


def ganqp_fid(tmp: Path, *args: str) -> dict:
    out = tmp / f"fid-{len(list(tmp.glob('fid-*.json')))}.json"
    main(["fid", *args, f"out={out}"])
    return json.loads(out.read_text())


def fails_with(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    return capsys.readouterr().err


# At 2048 dims pytorch-fid's matrix square root alone takes 22 s of CPU (ours: an eigen-
# decomposition), so that row is a long one; test_metrics checks the pool3 features of both
# tools equal on every run.
@pytest.mark.parametrize("dims", [64, pytest.param(2048, marks=pytest.mark.long)])
def test_agrees_with_pytorch_fid(env: SimpleNamespace, tmp_path: Path, dims: int) -> None:
    # pytorch-fid runs in the background while ganqp works.
    proc = subprocess.Popen([sys.executable, "-m", "pytorch_fid", str(env.a), str(env.b),
                             "--dims", str(dims), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    ours = ganqp_fid(tmp_path, f"samples={env.a}", f"ref={env.b}", f"fid.dims={dims}")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    theirs = float(re.search(r"FID:\s+(\S+)", stdout).group(1))
    assert theirs > 1.0
    assert ours["fid"] == pytest.approx(theirs, rel=1e-3)
    assert (ours["n"], ours["n_ref"], ours["dims"]) == (10, 10, dims)
    assert ours["extractor"] == "inception"


def test_identical_inputs_statistics_files_and_pytorch_fid_npz(env: SimpleNamespace,
                                                              tmp_path: Path) -> None:
    same = ganqp_fid(tmp_path, f"samples={env.a}", f"ref={env.a}", "fid.dims=64")
    assert abs(same["fid"]) < 1e-6
    stats_file = tmp_path / "b64.npz"
    first = ganqp_fid(tmp_path, f"samples={env.a}", f"ref={env.b}", "fid.dims=64",
                      f"save_stats={stats_file}")
    again = ganqp_fid(tmp_path, f"samples={env.a}", f"ref={stats_file}", "fid.dims=64")
    assert again["fid"] == first["fid"] and again["kid"] == first["kid"]
    # pytorch-fid reads the file as its own statistics format
    from pytorch_fid.fid_score import compute_statistics_of_path
    mu, sigma = compute_statistics_of_path(str(stats_file), None, 50, 64, "cpu")
    a = Stats.load(stats_file)
    ours_a = Stats.of(a.features)
    assert np.array_equal(mu, ours_a.mu) and np.array_equal(sigma, ours_a.sigma)
    # statistics without features (pytorch-fid's own files): FID, and KID left out
    bare = tmp_path / "bare.npz"
    np.savez(bare, mu=mu, sigma=sigma)
    no_kid = ganqp_fid(tmp_path, f"samples={env.a}", f"ref={bare}", "fid.dims=64")
    assert no_kid["fid"] == pytest.approx(first["fid"], rel=1e-12) and no_kid["kid"] is None


def numpy_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator written out term by term."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_equals_numpy_unbiased_estimator() -> None:
    rng = np.random.RandomState(1)
    fa = rng.rand(30, 8).astype(np.float32)
    fb = (rng.rand(25, 8) * 1.2).astype(np.float32)
    mean, std, size = kid(fa, fb, subsets=1, subset_size=1000)
    idx = next(kid_subsets(30, 25, 1, 25))
    assert size == 25 and std == 0.0
    fa64, fb64 = fa.astype(np.float64), fb.astype(np.float64)
    assert mean == pytest.approx(numpy_mmd2_unbiased(fa64[idx[0]], fb64[idx[1]]), rel=1e-10)
    mean, std, size = kid(fa, fb, subsets=5, subset_size=10, seed=3)
    rs = np.random.RandomState(3)
    vals = []
    for _ in range(5):
        i, j = rs.choice(30, 10, replace=False), rs.choice(25, 10, replace=False)
        vals.append(numpy_mmd2_unbiased(fa64[i], fb64[j]))
    assert size == 10
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals), rel=1e-8)


@pytest.mark.parametrize("n", [20, 300])
def test_frechet_distance_equals_pytorch_fid_function(n: int) -> None:
    """Both routes of the eig method (n x n with features when n < d, d x d without) against
    pytorch-fid's sqrtm function on the same statistics."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    rng = np.random.RandomState(n)
    a = Stats.of(np.abs(rng.randn(n, 48)).astype(np.float32))
    b = Stats.of((np.abs(rng.randn(n + 5, 48)) * 1.3 + 0.1).astype(np.float32))
    want = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert want > 1.0
    assert frechet_distance(a, b, method="eig") == pytest.approx(want, rel=1e-7)
    assert frechet_distance(b, a, method="eig") == pytest.approx(want, rel=1e-7)
    no_feats = frechet_distance(Stats(a.mu, a.sigma, a.n), Stats(b.mu, b.sigma, b.n), "eig")
    assert no_feats == pytest.approx(want, rel=1e-7)


def test_frechet_distance_closed_form_for_diagonal_covariances() -> None:
    """Diagonal S_a, S_b: FID = |mu_a - mu_b|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    rng = np.random.RandomState(0)
    d = 40
    mu_a, mu_b = rng.randn(d), rng.randn(d) + 0.5
    var_a, var_b = rng.rand(d) + 0.1, 2 * rng.rand(d) + 0.2
    want = float(((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum())
    a, b = Stats(mu_a, np.diag(var_a), 0), Stats(mu_b, np.diag(var_b), 0)
    assert frechet_distance(a, b, "eig") == pytest.approx(want, rel=1e-10)
    assert frechet_distance(b, a, "eig") == pytest.approx(want, rel=1e-10)


def test_digits_extractor_cache_and_held_out_accuracy(env: SimpleNamespace, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    real = ganqp_fid(tmp_path, f"samples={env.b}", "data=digits", "fid.extractor=digits")
    assert "computing reference statistics of 1797 images" in capsys.readouterr().out
    assert real["extractor"] == "digits" and real["dims"] == 64 and real["n_ref"] == 1797
    assert real["extractor_heldout_accuracy"] >= 0.97
    cached = ganqp_fid(tmp_path, f"samples={env.b}", "data=digits", "fid.extractor=digits")
    assert "computing" not in capsys.readouterr().out and cached["fid"] == real["fid"]
    stats = sorted(p.name for p in (env.cache / "fid_stats").iterdir())
    assert len(stats) == 1 and stats[0].startswith("digits-32px-n1797-digits64-")
    subset = ganqp_fid(tmp_path, f"samples={env.b}", "data=digits", "fid.extractor=digits",
                       "fid.ref_n=500", "res=16")
    assert subset["n_ref"] == 500 and len(list((env.cache / "fid_stats").iterdir())) == 2
    noise = ganqp_fid(tmp_path, f"samples={env.a}", "data=digits", "fid.extractor=digits")
    # 10 real digits sit far closer to the digits data than 10 noise images do
    assert real["fid"] * 5 < noise["fid"]


def test_digits_classifier_training_is_deterministic(env: SimpleNamespace) -> None:
    cached = make_extractor("digits", None, None, torch.device("cpu"))
    again = train_digits_classifier()
    for key, value in cached.net.state_dict().items():
        assert torch.equal(value, again["state"][key]), key
    assert again["heldout_accuracy"] == cached.accuracy >= 0.97


def test_bad_input_exits_2(env: SimpleNamespace, tmp_path: Path,
                           capsys: pytest.CaptureFixture) -> None:
    err = fails_with(["fid", f"samples={env.a}", f"ref={env.b}", "fid.dims=100"], capsys)
    assert "fid.dims=100" in err and "2048" in err
    err = fails_with(["fid", f"samples={env.a}", f"ref={env.b}", "fid.weights=/no/such.pth"],
                     capsys)
    assert "fid.weights=/no/such.pth" in err
    err = fails_with(["fid", f"samples={env.a}"], capsys)
    assert "ref=DIR" in err
    stats = tmp_path / "d.npz"
    ganqp_fid(tmp_path, f"samples={env.a}", f"ref={env.b}", "fid.extractor=digits",
              f"save_stats={stats}")
    err = fails_with(["fid", f"samples={env.a}", f"ref={stats}", "fid.dims=64"], capsys)
    assert "digits" in err and "fid.extractor" in err
    other = Stats.load(stats)
    other.meta["weights"] = "digits-v1-0123456789abcdef"
    other.save(tmp_path / "other.npz")
    err = fails_with(["fid", f"samples={env.a}", f"ref={tmp_path / 'other.npz'}",
                      "fid.extractor=digits"], capsys)
    assert "digits-v1-0123456789abcdef" in err and "other digits weights" in err


def test_missing_weights_offline_names_file_and_url(tmp_path: Path, env: SimpleNamespace
                                                    ) -> None:
    # A proxy nobody listens on: the download fails at once, as offline. no_proxy is
    # removed, or a host listed there would bypass the proxy and reach the internet.
    envvars = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    envvars.update(TORCH_HOME=str(tmp_path / "empty"), https_proxy="http://127.0.0.1:9",
                   HTTPS_PROXY="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-m", "ganqp_cli", "fid", f"samples={env.a}",
                           f"ref={env.b}"], capture_output=True, text=True, env=envvars,
                          timeout=120)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" in err
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in err and "fid.weights=" in err


def test_all_metrics_through_the_cli_equal_the_reference_packages(env: SimpleNamespace,
                                                                  tmp_path: Path) -> None:
    """`ganqp fid fid.metrics=[fid,kid,pr,dc,is]` on two folders: each number equals the
    reference package's on the features and logits of the same images (digits extractor)."""
    from prdc import compute_prdc
    from torch_fidelity.metric_isc import isc_features_to_metric

    from ganqp_cli.metrics.features import extract, folder_source
    digits = Digits(res=32).tensor
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for folder, lo in ((gen, 0), (ref, 300)):
        folder.mkdir()
        for i in range(lo, lo + 120):
            Image.fromarray(digits[i, 0].numpy()).save(folder / f"{i:04d}.png")
    got = ganqp_fid(tmp_path, f"samples={gen}", f"ref={ref}", "fid.extractor=digits",
                    "fid.metrics=[fid,kid,pr,dc,is]")
    ext = make_extractor("digits", None, None, torch.device("cpu"))
    g = extract(folder_source(str(gen), "samples"), ext, logits=True)
    r = extract(folder_source(str(ref), "ref"), ext).features
    pr, dc = compute_prdc(r, g.features, nearest_k=3), compute_prdc(r, g.features, nearest_k=5)
    isc = isc_features_to_metric(torch.from_numpy(g.logits), splits=10)
    want = {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"],
            "coverage": dc["coverage"], "inception_score": isc["inception_score_mean"],
            "inception_score_std": isc["inception_score_std"]}
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9, abs=1e-12), key
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1
    assert got["inception_score"] > 5  # the classifier is sure of most digits
    assert (got["pr_k"], got["dc_k"], got["is_splits"]) == (3, 5, 10)
    assert got["fid"] > 0 and got["kid"] is not None
    # the Inception Score needs no reference: none is asked for or computed
    only_is = ganqp_fid(tmp_path, f"samples={gen}", "fid.extractor=digits", "fid.metrics=[is]")
    assert only_is["inception_score"] == got["inception_score"] and only_is["n_ref"] is None
    assert "fid" not in only_is


def test_clean_resize_changes_the_numbers_and_the_cache_file(env: SimpleNamespace,
                                                             tmp_path: Path) -> None:
    """digits at 32 px against the digits data set at 16 px: the reference is resized, so
    legacy and clean give other statistics, cached under other names; a statistics file of
    one resize is refused by the other."""
    common = [f"samples={env.b}", "data=digits", "res=32", "fid.extractor=digits", "fid.ref_n=300"]
    legacy = ganqp_fid(tmp_path, *common)
    clean = ganqp_fid(tmp_path, *common, "fid.resize=clean")
    assert (legacy["resize"], clean["resize"]) == ("legacy", "clean")
    assert clean["fid"] != legacy["fid"] and clean["fid"] > 0
    names = [p.name for p in (env.cache / "fid_stats").glob("digits-32px-n300-*")]
    assert sorted(n.split("-")[-3] for n in names) == ["clean", "legacy"]
    stats = tmp_path / "legacy.npz"
    ganqp_fid(tmp_path, *common, f"save_stats={stats}")
    with pytest.raises(SystemExit) as exc:
        main(["fid", f"samples={env.b}", f"ref={stats}", "fid.extractor=digits",
              "fid.resize=clean", f"out={tmp_path / 'x.json'}"])
    assert exc.value.code == 2
