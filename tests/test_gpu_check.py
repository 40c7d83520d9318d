"""scripts/gpu_check.py runs end to end in its reduced CPU mode (the GPU run itself needs a
GPU machine: docs/performance.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def test_cpu_smoke_mode_prints_one_table_of_passing_checks():
    r = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--objectives", "wgan-gp",
                        "--skip", "bench"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = r.stdout[r.stdout.index("# gpu_check on cpu (smoke)"):].splitlines()
    assert table[1].split() == ["check", "setting", "result", "ok"]
    rows = table[3:]
    checks = [x.split("  ")[0] for x in rows]
    assert checks == ["objective wgan-gp", "objective wgan-gp", "spectral norm sigma",
                      "FID cpu vs cpu", "resume exactness"], rows
    assert all(x.rstrip().endswith("ok") for x in rows), rows
    assert "bitwise equal" in rows[-1] and "relative difference 0.00e+00" in rows[-2]
