"""The metrics during training: `train.fid_every`, `train.fid_n`, the `fid:` settings.

Every `fid_every` iterations (and at the last) `fid_n` samples from the generator that
`ganqp fid ckpt=...` would use (the EMA one when the run keeps it), always from the same z
(`fid.seed`, and the next seeds with `fid.repeats`), are compared with the training data set
(statistics cached) on every metric of `fid.metrics`. The numbers go to metrics.jsonl and
fid.jsonl; the best `fid.best` so far (lower or higher is better, as the metric says) lives in
the checkpoint's `extra` so that a resumed run keeps its best.pt. Nothing here touches the
global random state.

The loop sees four things: `FidMonitor.create(...)`, `.due(it, last)`, `.evaluate(it, G,
z_dim)` -> {name: number} to log, and `.improved` (write best.pt now).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from ganqp_cli import distributed as dist_
from ganqp_cli.classes import class_counts
from ganqp_cli.metrics import classwise
from ganqp_cli.metrics import registry as R
from ganqp_cli.metrics.evaluate import extractor_of, score_generator, summarize
from ganqp_cli.metrics.features import dataset_source
from ganqp_cli.metrics.reference import reference_stats
from ganqp_cli.metrics.validate import validate_fid_train

BEST_KEY = "fid_best"


class FidMonitor:
    def __init__(self, cfg: DictConfig, data: Any, device: torch.device, run_dir: Path,
                 extra: dict[str, Any], start: int) -> None:
        self.every, self.n, self.fc = int(cfg.train.fid_every), int(cfg.train.fid_n), cfg.fid
        self.device, self.extra, self.improved = device, extra, False
        self.metrics = R.selected(self.fc.metrics)
        self.best_key = str(self.fc.best)
        self.extractor = extractor_of(self.fc, self.metrics, device)
        # cond=true: samples of classes drawn with the data's frequencies
        self.class_counts = class_counts(data, len(data.classes)) if cfg.get("cond") else None
        if "acc" in [m.name for m in self.metrics]:
            classwise.check_acc_fits(data.classes, "fid.metrics")
        self.ref = None  # no reference when no selected metric needs one (modes)
        if R.needs_reference(self.metrics):
            src = dataset_source(data, self.fc.ref_n,
                                 labels=classwise.needs_labels(self.metrics))
            self.ref, _ = reference_stats(src, self.extractor, self.fc,
                                          cache=bool(self.fc.cache))
        self.path = run_dir / "fid.jsonl"
        if dist_.current().is_main and self.path.is_file():  # resumed: drop rows to be redone
            rows = [r for r in self.path.read_text().splitlines()
                    if r.strip() and json.loads(r)["iter"] <= start]
            self.path.write_text("".join(r + "\n" for r in rows))

    @classmethod
    def create(cls, cfg: DictConfig, data: Any, device: torch.device, run_dir: Path,
               extra: dict[str, Any], start: int) -> FidMonitor | None:
        every = cfg.train.get("fid_every", 0)
        if not every:
            return None
        validate_fid_train(cfg)  # also done centrally before any work; cheap to repeat
        return cls(cfg, data, device, run_dir, extra, start)

    def due(self, it: int, last: bool) -> bool:
        return it % self.every == 0 or last

    @property
    def best(self) -> dict[str, Any] | None:
        """{fid.best's key: value, "iter": it} of the best evaluation so far (a best kept by
        another key, before fid.best changed, does not count)."""
        stored = self.extra.get(BEST_KEY)
        return stored if stored and self.best_key in stored else None

    def logged(self) -> list[str]:
        keys = R.logged_keys(self.metrics)
        if int(self.fc.repeats) > 1:
            keys += [f"{k}_repeat_std" for k in keys if k in R.DIRECTIONS]
        return keys

    def evaluate(self, it: int, G: nn.Module, z_dim: int) -> dict[str, float | None]:
        """The selected metrics of G now (a collective under torchrun); sets `improved`."""
        if dist_.current().enabled:
            # Rank 0's generator, on every rank: each rank makes a share of the samples, and
            # BatchNorm running statistics are per rank (not averaged like gradients); the
            # checkpoint, and so `ganqp fid ckpt=...`, holds rank 0's.
            G = copy.deepcopy(G)
            dist_.broadcast_module([G])
        draws = score_generator(G, z_dim, self.n, self.ref, self.extractor, self.fc,
                                self.metrics, self.device, f"iter {it}", self.class_counts)
        row = None
        if dist_.current().is_main:
            s = summarize(draws, self.metrics)
            row = {"iter": it, **{k: s[k] for k in self.logged()}, "n": s["n"],
                   "extractor": self.extractor.name, "dims": int(self.extractor.dims)}
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        row = dist_.broadcast_object(row)
        value, best = row[self.best_key], self.best
        self.improved = R.better(self.best_key, value, best[self.best_key] if best else None)
        if self.improved:
            self.extra[BEST_KEY] = {self.best_key: value, "iter": it}
        return {k: row[k] for k in self.logged()}
