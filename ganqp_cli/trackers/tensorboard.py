"""`logger=tensorboard`: scalars, sample grids and the resolved config as TensorBoard events
in `<run dir>/<dir>` (`tensorboard --logdir outputs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from ganqp_cli import keyspec as K
from ganqp_cli.trackers.base import Tracker, numbers


class TensorBoardTracker(Tracker):
    package, extra = "tensorboard", "tensorboard"
    KEYS = {"dir": K.text}

    def __init__(self, run_dir: Path, resolved: dict[str, Any], start: int, dir: str = "tb"
                 ) -> None:
        from torch.utils.tensorboard import SummaryWriter
        # purge_step: events a crashed run wrote after its checkpoint (iteration `start`) are
        # hidden, so the resumed run's rows replace them instead of doubling them.
        self.tb = SummaryWriter(str(run_dir / dir), purge_step=start + 1 if start else None)
        if not start:
            self.tb.add_text("config", "```\n" + yaml.safe_dump(resolved, sort_keys=False)
                             + "```", 0)

    def log(self, it: int, values: dict[str, Any]) -> None:
        for k, v in numbers(values).items():
            self.tb.add_scalar(k, v, it)

    def image(self, it: int, name: str, img: Image.Image, path: Path) -> None:
        self.tb.add_image(name, np.asarray(img.convert("RGB")), it, dataformats="HWC")

    def close(self, outcome: str) -> None:
        self.tb.close()
