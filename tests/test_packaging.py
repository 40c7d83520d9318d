"""The configs travel inside the wheel, so a non-editable install works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_copy(dest: Path) -> Path:
    """What a build reads (top-level files, the package, the configs), copied to `dest`:
    setuptools writes build/ and *.egg-info next to pyproject.toml, and the checkout must
    stay clean."""
    dest.mkdir()
    for p in ROOT.iterdir():
        if p.is_file():
            shutil.copy2(p, dest / p.name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("ganqp_cli", "conf"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)
    return dest


def build_outputs() -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (*ROOT.glob("build"), *ROOT.glob("*.egg-info"))}


def test_wheel_contains_every_config(tmp_path):
    before = build_outputs()
    src = source_copy(tmp_path / "src")
    # Build isolation fetches setuptools as a fresh machine would (a new venv has no wheel).
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                        "-q", "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert build_outputs() == before  # nothing built or rewritten in the source tree
    wheel = next(tmp_path.glob("ganqp-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"ganqp_cli/conf/{p.relative_to(ROOT / 'conf')}"
                for p in (ROOT / "conf").rglob("*.yaml")}
    assert expected and expected <= names
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "ganqp_cli").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules and modules <= names, sorted(modules - names)  # every subpackage listed
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
