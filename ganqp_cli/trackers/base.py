"""What every tracker (`logger=` option) is: a sink for the rows and grids a run logs.

The run directory's metrics.jsonl, fid.jsonl and samples/ are written whatever the trackers
are (they are what resume, `ganqp report` and scripts/fid_table.py read); a tracker mirrors
them elsewhere. Only rank 0 builds trackers, and they are called only at log steps with
numbers already on the host, so they add no device synchronisation to an iteration.

Which tracker run a run directory continues lives in the directory itself
(`trackers.json`), not in the checkpoint: a resumed run continues its tracker run, while a
run branched off another's checkpoint (`resume=PATH` into a new directory) starts its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from ganqp_cli.atomic import write_atomic

IDS_FILE = "trackers.json"


class Tracker:
    """One `logger.<name>` sink. `package`/`extra`: what must be installed, and the extra of
    pyproject.toml that installs it (named when it is missing)."""

    package: str | None = None
    extra: str | None = None

    def log(self, it: int, values: dict[str, Any]) -> None:
        """A row of metrics.jsonl (numbers, None for non-finite ones)."""

    def image(self, it: int, name: str, img: Image.Image, path: Path) -> None:
        """A sample grid, already written to `path`."""

    def close(self, outcome: str) -> None:
        """The run ends: done, interrupted or failed."""


def numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (`train.batch_size`)."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def stored_id(run_dir: Path, name: str) -> dict[str, Any] | None:
    """What tracker `name` stored for this run directory (its run id), if anything."""
    path = run_dir / IDS_FILE
    try:
        got = json.loads(path.read_text()).get(name) if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return got if isinstance(got, dict) else None


def store_id(run_dir: Path, name: str, value: dict[str, Any]) -> None:
    path = run_dir / IDS_FILE
    try:
        ids = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        ids = {}
    ids = {**(ids if isinstance(ids, dict) else {}), name: value}
    text = (json.dumps(ids, indent=1) + "\n").encode()
    write_atomic(path, lambda f: f.write(text))
