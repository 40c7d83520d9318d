"""The configuration keys that differ between runs: each run's resolved config flattened to
dotted keys, and the keys whose values are not the same in every run (a key one run lacks
counts as differing)."""

from __future__ import annotations

import json
from typing import Any

from ganqp_cli.report.runs import Run
from ganqp_cli.trackers.base import flatten

ABSENT = "–"


def show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def differing(runs: list[Run]) -> tuple[list[str], list[dict[str, str]]]:
    """(the keys that differ, sorted; per run its value of each, as text)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    diff = [k for k in keys if len({show(f.get(k, ABSENT)) for f in flat}) > 1]
    return diff, [{k: show(f[k]) if k in f else ABSENT for k in diff} for f in flat]
