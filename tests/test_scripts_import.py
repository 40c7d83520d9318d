"""Every script in scripts/ imports (its names of ganqp's modules still exist): a refactor
that moves a module breaks this test, not a user's benchmark run."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent.parent / "scripts").glob("*.py"))
# modules the benchmarks import, not commands
LIBRARIES = {"paired", "bench_train_dist", "loop_body"}


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_imports(path: Path) -> None:
    names = runpy.run_path(str(path), run_name="imported_by_test")  # main() does not run
    if path.stem not in LIBRARIES:
        assert callable(names.get("main")), f"{path.name} has no main()"
