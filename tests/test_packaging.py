"""The configs travel inside the wheel, so a non-editable install works."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_config(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("ganqp-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"ganqp_cli/conf/{p.relative_to(ROOT / 'conf')}"
                for p in (ROOT / "conf").rglob("*.yaml")}
    assert expected and expected <= names
    assert "ganqp_cli/train.py" in names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "ganqp = ganqp_cli.cli:main" in text

    # Installed from the wheel (not the source tree), the configs load from the package.
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = ("import ganqp_cli, sys; assert ganqp_cli.__file__.startswith(sys.argv[1]), "
            "ganqp_cli.__file__; from ganqp_cli.cli import main; "
            "main(['train', '--cfg', 'job', 'objective=gan-qp-l2'])")
    r = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin"})
    assert r.returncode == 0, r.stderr
    assert "distance: l2" in r.stdout
