"""What a run shows and records: metrics.jsonl, sample images, a progress display, and the
trackers of `logger=` (ganqp_cli/trackers: tensorboard, csv, mlflow, wandb). Only rank 0
logs. A tracker that fails mid-run (a server gone) is dropped with a warning, not the run:
metrics.jsonl and samples/ hold everything it would have had."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ganqp_cli.trackers.base import Tracker


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class RunLogger:
    def __init__(self, run_dir: Path, total: int, start: int, enabled: bool = True,
                 console: bool | None = None, trackers: Sequence[Tracker] = ()) -> None:
        self.run_dir, self.total, self.start, self.enabled = run_dir, total, start, enabled
        self.t0 = time.time()
        self.metrics = None
        self.trackers = list(trackers)
        self.progress = None
        self.last_it = start
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
        interactive = sys.stdout.isatty() if console is None else console
        if interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                     TextColumn("eta"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[last]}"))
            self.task = self.progress.add_task("train", total=total, completed=start,
                                               rate="", last="")
            self.progress.start()

    def info(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def step(self, it: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=it)

    def log(self, it: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in values.items()}
        self.metrics.write(json.dumps({"iter": it, **values}) + "\n")
        self.last_it = it
        self.each("log", it, values)
        short = "  ".join(f"{k} {_fmt(values[k])}" for k in ("d_loss", "g_loss", "fid")
                          if values.get(k) is not None)
        if self.progress is not None:
            rate = values.get("img_per_s")
            self.progress.update(self.task, completed=it, last=short,
                                 rate=f"{rate:.0f} img/s" if rate else "")
        else:
            extra = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items()
                              if k not in ("d_loss", "g_loss", "fid") and v is not None)
            print(f"[{it:>7d}/{self.total}] {short}  {extra}", flush=True)

    def image(self, it: int, name: str, img: Image.Image, path: Path) -> None:
        if not self.enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        self.each("image", it, name, img, path)

    def each(self, method: str, *args: Any) -> None:
        """Call every tracker; one that raises is reported and dropped."""
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker must not end the run
                self.trackers.remove(t)
                self.info(f"warning: logger {type(t).__name__} failed in {method} "
                          f"({type(err).__name__}: {err}); it logs no more in this run "
                          f"(metrics.jsonl and samples/ have everything)")

    def outcome(self) -> str:
        """How the run ended, for the trackers: status.json when the loop already wrote
        failed or interrupted there (it does before closing the log), else done when the
        last iteration was logged."""
        try:
            status = json.loads((self.run_dir / "status.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            status = None
        if status in ("failed", "interrupted"):
            return status
        return "done" if self.last_it >= self.total else "interrupted"

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.trackers:
            self.each("close", self.outcome())
            self.trackers = []
