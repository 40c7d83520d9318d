"""scripts/gpu_check.py in its reduced CPU mode: every row's code path at tiny size (the GPU
run itself needs a GPU machine: docs/development.md#the-gpu-check), and the runner's
install step with the carried wheels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"
SPEED = ["bf16 peak"] + ["img/s 16 px"] * 4 + ["prepared data path"]
DIST = ["2 ranks, 1 GPU (gloo)"] * 2


def forward_flops(net: str) -> float:
    """FLOPs of one sample through the smoke run's network (arch=gan-qp, width 0.125)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ganqp_cli.networks import QPArch
    arch = QPArch(width=0.125)
    shape = (3, 16, 16)
    x = torch.randn(1, arch.z_dim) if net == "generator" else torch.randn(1, *shape)
    model = getattr(arch, net)(shape).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def smoke(out: Path, *args: str) -> list[dict]:
    r = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out), *args],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    saved = json.loads((out / "gpu_check.json").read_text())
    md = (out / "gpu_check.md").read_text()
    assert md.strip() in r.stdout  # one table, printed and saved alike
    assert "What this table cannot show" in md and "NCCL" in md
    rows = saved["rows"]
    assert md.count("\n| ") == len(rows) + 1  # the header and one line per row
    assert all(x["ok"] in ("ok", "-") for x in rows), rows
    return rows


@pytest.mark.slow
def test_speed_data_and_distributed_rows_run_on_the_cpu(tmp_path):
    rows = smoke(tmp_path, "--skip", "objectives,spectral,fid,resume")
    assert [x["check"] for x in rows] == SPEED + DIST, rows
    speed = rows[1:5]
    assert [x["setting"] for x in speed] == ["fp32", "bf16", "bf16 + channels_last",
                                             "bf16 + channels_last + compile"]
    forward = 3 * 4 * (forward_flops("generator") + 2 * forward_flops("critic"))
    for x in speed:
        v = x["values"]
        assert v["ganqp_img_s"] > 0 and v["hand_img_s"] > 0 and v["ganqp_peak_gib"] > 0
        # An iteration: 3 updates (batch 4) of G(z), D(real), D(fake) forward, and backward
        # passes of at most twice the forward FLOPs (input and weight gradients).
        assert forward < v["tflop_per_iteration"] * 1e12 <= 3 * forward, (v, forward)
        assert v["mfu"] > 0
    for x in rows[-2:]:  # 2 gloo ranks against 1 process, in float32
        assert x["values"]["max_rel_grad_diff"] < 1e-3, x


@pytest.mark.long
def test_every_row_runs_on_the_cpu(tmp_path):
    rows = smoke(tmp_path)
    checks = [x["check"] for x in rows]
    assert checks == SPEED + DIST + ["objective gan-qp", "objective wgan-gp",
                                     "spectral norm sigma", "FID cpu vs cpu",
                                     "resume exactness", "objective gan-qp",
                                     "objective wgan-gp"], checks
    assert "bitwise equal" in rows[-3]["result"]
    assert "relative difference 0.00e+00" in rows[-4]["result"]


def test_the_runner_installs_the_carried_wheels(tmp_path):
    """scripts/gpu_check_run.sh's install step, as the GPU machine runs it, with the wheels
    `gpu_check_run.sh fetch` downloads (skipped where they were not fetched: a fresh clone)."""
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if not wheels:
        pytest.skip("no .whl/ folder: `bash scripts/gpu_check_run.sh fetch` downloads it")
    found = shutil.which("python3.12")  # the GPU machine's version, where there is one
    python = subprocess.run([found, "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True).stdout.strip() if found else ""
    python = python or sys.executable
    site = tmp_path / "site"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check_run.sh"), "install",
                        str(site)], capture_output=True, text=True, timeout=600,
                       env={"PATH": str(Path(python).parent) + ":/usr/bin:/bin",
                            "PYTHON": python, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # The installed hydra composes ganqp's installed config (no torch needed for that).
    code = ("from hydra import compose, initialize_config_module\n"
            "with initialize_config_module('ganqp_cli.conf', version_base='1.3'):\n"
            "    cfg = compose('train', overrides=['res=128'])\n"
            "print(cfg.train.amp, cfg.train.compile, cfg.res)\n")
    r = subprocess.run([python, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n"
                        + code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["auto", "auto", "128"]
