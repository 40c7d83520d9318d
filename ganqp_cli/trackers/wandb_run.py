"""`logger=wandb`: a Weights & Biases run per run directory: config = the resolved config,
history = every number of metrics.jsonl at its iteration (step), sample grids as images.
Offline by default (`logger.wandb.mode`, or WANDB_MODE): the run is written under
`<run dir>/wandb/` with no network, and `wandb sync <run dir>/wandb/offline-run-*` uploads
it later; `logger.wandb.mode=online` logs as it runs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from ganqp_cli import checks
from ganqp_cli import keyspec as K
from ganqp_cli.trackers.base import Tracker, numbers, store_id, stored_id


def _maybe_text(key: str, v: Any) -> Any:
    return v if v is None else K.text(key, v)


def _names(key: str, v: Any) -> Any:
    checks.require(v is None or (isinstance(v, list) and all(isinstance(t, str) for t in v)),
                   key, v, "a list of names, e.g. [digits,baseline]")
    return v


class WandbTracker(Tracker):
    package, extra = "wandb", "wandb"
    KEYS = {"project": K.text, "entity": _maybe_text, "name": _maybe_text,
            "mode": K.one_of("offline", "online", "disabled"), "log_grids": K.flag,
            "tags": _names}

    def __init__(self, run_dir: Path, resolved: dict[str, Any], start: int,
                 project: str = "ganqp", entity: str | None = None, name: str | None = None,
                 mode: str = "offline", log_grids: bool = True,
                 tags: list[str] | None = None) -> None:
        import wandb
        self.wandb, self.log_grids = wandb, log_grids
        found = stored_id(run_dir, "wandb")
        run_id = found["id"] if found and found.get("id") else uuid.uuid4().hex[:8]
        if not found:
            store_id(run_dir, "wandb", {"id": run_id, "project": project})
        # console off: the run's own output goes to the terminal or log file as before, not
        # through wandb's capture of stdout/stderr.
        self.run = wandb.init(project=project, entity=entity, name=name or run_dir.name,
                              id=run_id, resume="allow", mode=mode, dir=str(run_dir),
                              config=resolved, tags=list(tags or []),
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, it: int, values: dict[str, Any]) -> None:
        self.run.log(numbers(values), step=it)

    def image(self, it: int, name: str, img: Image.Image, path: Path) -> None:
        if self.log_grids:
            self.run.log({name: self.wandb.Image(img.copy())}, step=it)

    def close(self, outcome: str) -> None:
        self.run.finish(exit_code=0 if outcome == "done" else 1)
