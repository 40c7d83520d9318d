"""Run directories written by hand with known numbers, as `ganqp train` lays them out
(docs/training.md#the-run-directory), for the tests of the table, the report and
scripts/fid_table.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image


def make_job(sweep: Path, objective: str, seed: int, status: str | None,
             fid: list[tuple[int, float]], rates: list[tuple[int, float]], *, data="digits",
             res=32, extractor="digits", iters=300, at: int | None = None,
             extra: tuple[str, ...] = (), more: dict[int, dict] | None = None,
             grids: tuple[int, ...] = (), rows: dict[int, dict] | None = None,
             status_extra: dict | None = None) -> Path:
    """A job of a sweep: config, overrides, status.json (None: none), fid.jsonl rows
    (iter, fid) with `more` keys per iteration, metrics.jsonl rows (iter, it_per_s) with
    `rows` keys per iteration, and sample grids at the iterations `grids`."""
    overrides = ["experiment=digits-table", f"objective={objective}", f"seed={seed}", *extra]
    job = sweep / ",".join(sorted(o for o in overrides if "/" not in o))  # as Hydra names it
    (job / ".hydra").mkdir(parents=True)
    cfg = {"res": res, "seed": seed, "objective": {"name": objective, "d_steps": 2},
           "data": {"name": data, "root": "${oc.env:GANQP_DATA,data}/x"},
           "train": {"iters": iters, "batch_size": 8, "fid_every": 100},
           "fid": {"extractor": extractor}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status is not None:
        it = at if at is not None else iters
        (job / "status.json").write_text(json.dumps(
            {"status": status, "iter": it, "iters": iters, "time": 0.0, **(status_extra or {})}))
    (job / "fid.jsonl").write_text("".join(
        json.dumps({"iter": i, "fid": f, "kid": 0.0, "kid_std": 0.0,
                    **(more or {}).get(i, {}), "n": 100, "extractor": extractor,
                    "dims": 64}) + "\n" for i, f in fid))
    (job / "metrics.jsonl").write_text("".join(
        json.dumps({"iter": i, "d_loss": 0.0, "g_loss": 0.0, "it_per_s": r,
                    **(rows or {}).get(i, {})}) + "\n" for i, r in rates))
    for i, it in enumerate(grids):
        write_grid(job / "samples" / f"iter_{it:07d}.png", value=40 * i)
    return job


def write_grid(path: Path, value: int = 0, size: int = 36) -> None:
    """A grid of one grey level (so a test can tell grids apart by their pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
