"""`data=stacked-digits` and `fid.metrics=[modes]`: the data set's items and labels, and the
mode coverage of folders whose modes are known (made from the digits), of the data set
itself, during training and on a checkpoint; and the refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganqp_cli.data import Digits, StackedDigits
from ganqp_cli.data.stacked_digits import digit_labels
from ganqp_cli.metrics.modes import channel_digits, classifier, coverage, mode_counts
from tests.conftest import TINY, read_metrics


def test_items_are_three_digits_with_their_mode_as_label():
    data = StackedDigits(res=16, n=500, seed=3)
    digits, labels = Digits(16).tensor[:, 0], digit_labels()
    assert data.shape == (3, 16, 16) and len(data) == 500 and data.tensor.dtype == torch.uint8
    for i in (0, 17, 499):
        r, g, b = data.picks[i].tolist()
        assert torch.equal(data.load(i), torch.stack([digits[r], digits[g], digits[b]]))
        assert data.label(i) == 100 * labels[r] + 10 * labels[g] + labels[b]
        assert data.classes[data.label(i)] == f"{labels[r]}{labels[g]}{labels[b]}"
    assert len(data.classes) == 1000 and data.labels().dtype == torch.int64
    again, other = StackedDigits(res=16, n=500, seed=3), StackedDigits(res=16, n=500, seed=4)
    assert torch.equal(again.tensor, data.tensor)  # deterministic per seed
    assert not torch.equal(other.tensor, data.tensor)
    # draws are uniform: every mode about equally often over the default 25,600 items
    counts = torch.bincount(StackedDigits(res=16).labels(), minlength=1000)
    assert counts.min() >= 5 and counts.max() <= 55


def test_coverage_numbers():
    assert coverage(mode_counts(np.array([[1, 2, 3]] * 7))) == {
        "modes": 1, "modes_kl": pytest.approx(math.log(1000)), "modes_n": 7}
    every = np.array([[k // 100, k // 10 % 10, k % 10] for k in range(1000)] * 2)
    assert coverage(mode_counts(every)) == {"modes": 1000, "modes_kl": pytest.approx(0, abs=1e-12),
                                            "modes_n": 2000}
    c = coverage(mode_counts(np.array([[0, 0, 0]] * 5 + [[0, 0, 7]] * 3 + [[9, 9, 9]] * 2)))
    p = np.array([0.5, 0.3, 0.2])
    assert c["modes"] == 3 and c["modes_kl"] == pytest.approx((p * np.log(1000 * p)).sum())


def readable_digit_per_class() -> list[int]:
    """For each class 0-9, a digit (index into data=digits at 32 px) the classifier reads
    as that class, so that images built from them have known modes."""
    images, labels = Digits(32).tensor, digit_labels()
    read = classifier("cpu").run(images, logits=True)[1].argmax(1)
    return [int(((labels == k) & (read == k)).nonzero()[0]) for k in range(10)]


def write_modes(folder: Path, modes: list[int], pick: list[int]) -> None:
    digits = Digits(32).tensor[:, 0]
    folder.mkdir()
    for i, m in enumerate(modes):
        rgb = torch.stack([digits[pick[m // 100]], digits[pick[m // 10 % 10]],
                           digits[pick[m % 10]]], 2)
        Image.fromarray(rgb.numpy(), "RGB").save(folder / f"{i:05d}.png")


def fid_json(cli, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"fid{len(list(tmp_path.iterdir()))}.json"
    r = cli("fid", *args, "fid.metrics=[modes]", f"out={out}")
    assert r.code == 0, r
    return json.loads(out.read_text())


def test_folders_of_known_modes(cli, tmp_path):
    pick = readable_digit_per_class()
    every = list(range(1000))
    write_modes(tmp_path / "all", every, pick)
    skewed = [123] * 10 + [7] * 6 + [990] * 4
    write_modes(tmp_path / "skewed", skewed, pick)
    r = fid_json(cli, tmp_path, f"samples={tmp_path / 'all'}")
    assert (r["modes"], r["modes_n"]) == (1000, 1000) and r["modes_kl"] == pytest.approx(0)
    assert r["extractor"] == "none"  # no feature network is loaded for modes alone
    r = fid_json(cli, tmp_path, f"samples={tmp_path / 'skewed'}")
    p = np.array([0.5, 0.3, 0.2])
    assert (r["modes"], r["modes_n"]) == (3, 20)
    assert r["modes_kl"] == pytest.approx((p * np.log(1000 * p)).sum(), rel=1e-9)


def test_the_data_set_itself_covers_its_modes():
    """The classifier fits: 10,000 real items (about 9,970 distinct modes expected of a
    uniform draw: 1000 (1 - e^-10)) are read as 1,000 modes with a KL close to a uniform
    sample's."""
    data = StackedDigits(res=32, n=10_000, seed=1)
    read = torch.cat([channel_digits(data.tensor[i:i + 2000], classifier("cpu"))
                      for i in range(0, 10_000, 2000)])
    c = coverage(mode_counts(read.numpy()))
    truth = coverage(np.bincount(data.labels().numpy(), minlength=1000))
    assert c["modes"] >= 995 and truth["modes"] == 1000
    assert c["modes_kl"] < truth["modes_kl"] + 0.02  # ~0.05 for 10 samples per mode
    assert (read.numpy() * [100, 10, 1]).sum(1).tolist() != data.labels().tolist()  # not 100%
    per_channel = (read == torch.stack([digit_labels()[data.picks[:, c]] for c in range(3)],
                                       1)).float().mean()
    assert per_channel > 0.97


@pytest.mark.slow
def test_modes_during_training_equal_modes_of_the_checkpoint(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "data=stacked-digits", "train.fid_every=2", "train.fid_n=300",
            "fid.metrics=[modes]", "fid.best=modes", f"hydra.run.dir={run}")
    assert r.code == 0, r
    rows = [json.loads(x) for x in (run / "fid.jsonl").read_text().splitlines()]
    assert [(x["iter"], x["n"]) for x in rows] == [(2, 300), (4, 300)]
    assert read_metrics(run)[-1]["modes"] == rows[-1]["modes"]
    got = fid_json(cli, tmp_path, f"ckpt={run / 'checkpoints' / 'last.pt'}", "n=300")
    assert (got["modes"], got["modes_kl"]) == (rows[-1]["modes"], rows[-1]["modes_kl"])
    assert 1 <= got["modes"] <= 300


def test_modes_on_data_that_are_not_stacked_digits_is_refused(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "train.fid_every=2", "fid.metrics=[modes]", "fid.best=modes",
            f"hydra.run.dir={run}")
    assert r.code == 2 and "fid.metrics" in r.msg and "data=stacked-digits" in r.msg, r
    assert "Traceback" not in r.err and not (run / "metrics.jsonl").exists()
    r = cli("train", *TINY, "train.iters=2", f"hydra.run.dir={run}")
    assert r.code == 0, r
    r = cli("fid", f"ckpt={run / 'checkpoints' / 'last.pt'}", "fid.metrics=[modes]", "n=10",
            f"out={tmp_path / 'x.json'}")
    assert r.code == 2 and "this run's data is digits" in r.msg and "Traceback" not in r.err


def test_modes_table_at_equal_iterations_and_equal_time(tmp_path):
    """scripts/modes_table.py on a hand-written sweep: rows by overrides less the seed, means
    over seeds, and the equal-time column picking each job's last evaluation in budget."""
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location(
        "modes_table", Path(__file__).resolve().parents[1] / "scripts" / "modes_table.py")
    mt = importlib.util.module_from_spec(spec)
    sys.modules["modes_table"] = mt  # its dataclass looks its module up
    spec.loader.exec_module(mt)

    def job(name: str, overrides: list[str], it_per_s: float, modes: list[int]) -> None:
        d = tmp_path / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (d / "metrics.jsonl").write_text("".join(
            json.dumps({"iter": i, "it_per_s": it_per_s}) + "\n" for i in (100, 200, 300, 400)))
        (d / "fid.jsonl").write_text("".join(
            json.dumps({"iter": 200 * (k + 1), "modes": m, "modes_kl": 1.0 / m}) + "\n"
            for k, m in enumerate(modes)) + '{"iter": 6')  # a truncated last line
        (d / "status.json").write_text('{"status": "done"}')

    job("a0", ["objective=gan-qp", "seed=0"], 10.0, [100, 300])  # 40 s for 400 iterations
    job("a1", ["objective=gan-qp", "seed=1"], 10.0, [200, 500])
    job("b0", ["objective=wgan-gp", "seed=0"], 2.0, [600, 900])  # 200 s
    text = mt.table([mt.load_job(tmp_path / n) for n in ("a0", "a1", "b0")], None)
    assert "Equal iterations: 400. Equal time: 40 s" in text
    a = next(line for line in text.splitlines() if line.startswith("| objective=gan-qp"))
    b = next(line for line in text.splitlines() if line.startswith("| objective=wgan-gp"))
    # gan-qp: 300 and 500 at 400 iterations (mean 400 ± 141), all within 40 s
    assert "| 2 (2 done) | 400 ± 141 |" in a and "| 0.100 | 400 ± 141 |" in a
    # wgan-gp: 900 at 400 iterations; in 40 s (0.5 s/iteration) it reaches 80 iterations, so
    # no evaluation yet ("-"); with 100 s it reaches its iteration-200 evaluation
    assert "| 1 (1 done) | 900 |" in b and b.endswith("| - | - | - |")
    assert mt.table([mt.load_job(tmp_path / "b0")], 100.0).splitlines()[4].endswith(
        "| 600 | 0.00 | 200 |")
    # with costs measured in pairs (x gan-qp): wgan-gp at 5x reaches 400 / 5 = 80 iterations
    # in gan-qp's time for 400, before its first evaluation; at 2x it reaches 200
    jobs = [mt.load_job(tmp_path / n) for n in ("a0", "a1", "b0")]
    for cost, tail in ((5.0, "| - | - | - |"), (2.0, "| 600 | 0.00 | 200 |")):
        text = mt.table(jobs, costs={"objective=gan-qp": mt.Spread.of([1.0]),
                                     "objective=wgan-gp": mt.Spread.of([cost])})
        b = next(line for line in text.splitlines() if line.startswith("| objective=wgan-gp"))
        assert f"| {cost:.2f} ({cost:.2f}-{cost:.2f}) |" in b and b.endswith(tail), b
