"""What a run shows and records: metrics.jsonl, sample images, a progress display,
and TensorBoard scalars/images when `tensorboard` is installed. Only rank 0 logs."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class RunLogger:
    def __init__(self, run_dir: Path, total: int, start: int, enabled: bool = True,
                 console: bool | None = None) -> None:
        self.run_dir, self.total, self.start, self.enabled = run_dir, total, start, enabled
        self.t0 = time.time()
        self.metrics = None
        self.tb = None
        self.progress = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            self.tb = None
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
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float):
                    self.tb.add_scalar(k, v, it)
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
        if self.tb is not None:
            arr = np.asarray(img.convert("RGB"))
            self.tb.add_image(name, arr, it, dataformats="HWC")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.tb is not None:
            self.tb.close()
