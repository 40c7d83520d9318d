"""The report of a small real sweep, opened in headless Chromium (Debian's `chromium`; .ci/run
installs it): the page loads with no console error and no request beyond the file itself
and its data: URIs, every run has its row, its lines in the figures and its grids, and a
screenshot is not blank. Locally without chromium the test is skipped saying so; in CI
(CI=true) a missing browser fails it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import Browser, chromium
from tests.conftest import TINY

# No FID during training: the digits classifier it needs would train first (most of this
# file's CPU); tests/test_report.py covers the FID columns and figures.
SWEEP = [*TINY, "train.iters=4", "train.log_every=1", "train.sample_every=1",
         "hydra.sweep.subdir=${objective.name}_${seed}"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Three tiny runs (two objectives, two seeds of one) and a copy of one cut short as a
    running job leaves it: a torn last line, no grid, status running."""
    from ganqp_cli.cli import main
    root = tmp_path_factory.mktemp("sweep") / "sweep"
    for objective, seeds in (("gan-qp", "0,1"), ("wgan-gp", "0")):
        try:
            main(["train", "-m", *SWEEP, f"objective={objective}", f"seed={seeds}",
                  f"hydra.sweep.dir={root}"])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
    cut = root / "gan-qp_2"
    shutil.copytree(root / "gan-qp_1", cut, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.rmtree(cut / "samples")
    text = (cut / "metrics.jsonl").read_text()
    (cut / "metrics.jsonl").write_text(text[:text.index("\n") + 20])
    (cut / "status.json").write_text('{"status": "running", "iter": 2, "iters": 4}')
    return root


@pytest.fixture
def browser():
    exe = chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    b = Browser(exe, 1280, 1000)
    yield b
    b.close()


@pytest.mark.slow
def test_the_report_opens_in_chromium_with_every_run(cli, sweep, browser, tmp_path):
    r = cli("report", f"runs={sweep}")
    assert r.code == 0, r
    page = sweep / "report.html"
    browser.open(page.as_uri())
    assert browser.errors() == []
    assert [u for u in browser.requests() if not u.startswith("data:")] == [page.as_uri()]
    runs = ["gan-qp_0", "gan-qp_1", "gan-qp_2", "wgan-gp_0"]
    js = "Array.from(document.querySelectorAll('{}')).map(e => e.dataset.run)"
    assert browser.evaluate(js.format("table.runs tr[data-run]")) == runs
    # each run has its line in the 3 figures (iterations, images, time) of each loss
    for key in ("d_loss", "g_loss"):
        drawn = browser.evaluate(js.format(f'.figrow[data-key="{key}"] [data-run]'))
        assert sorted(drawn) == sorted(runs * 3), (key, drawn)
    assert browser.evaluate(js.format("tr[data-config]").replace("dataset.run",
                                                                 "dataset.config")) == [
        "gan-qp", "wgan-gp"]
    # every grid decoded: the last of the 3 finished runs (no FID: no best) and a strip of
    # 4 grids each
    shown = browser.evaluate("Array.from(document.images).map(i => i.complete && "
                             "i.naturalWidth > 0)")
    assert len(shown) == 3 * (1 + 4) and all(shown)
    assert "gan-qp_2" in browser.evaluate(
        "document.querySelector('tr.running').textContent")
    shot = tmp_path / "shot.png"
    browser.screenshot(shot)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape[1] == 1280 and img.shape[0] > 600  # the viewport, less the window frame
    assert img.std() > 10 and len(np.unique(img)) > 20  # text, tables and lines, not blank
