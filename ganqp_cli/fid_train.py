"""FID during training: `train.fid_every`, `train.fid_n`, the `fid:` settings.

Every `fid_every` iterations (and at the last) `fid_n` samples from the generator that
`ganqp fid ckpt=...` would use (the EMA one when the run keeps it), always from the same z
(`fid.seed`), are compared with the training data set (statistics cached). The values go to
metrics.jsonl and fid.jsonl; the best FID so far lives in the checkpoint's `extra` so a
resumed run keeps its best.pt. Nothing here touches the global random state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from ganqp_cli import distributed as D
from ganqp_cli.errors import UserError
from ganqp_cli.extractors import make_extractor
from ganqp_cli.features import dataset_source, extract, generator_source
from ganqp_cli.fid import Stats, reference_stats, scores

BEST_KEY = "fid_best"


class FidMonitor:
    def __init__(self, cfg: DictConfig, data: Any, device: torch.device, run_dir: Path,
                 extra: dict[str, Any], start: int) -> None:
        t = cfg.train
        if not isinstance(t.fid_n, int) or t.fid_n < 2:
            raise UserError(f"train.fid_n={t.fid_n!r} is not valid: the number of generated "
                            "samples per FID evaluation, >= 2 (10000 is the standard).")
        self.every, self.n, self.fc, self.device = int(t.fid_every), int(t.fid_n), cfg.fid, device
        self.extra, self.improved = extra, False
        self.extractor = make_extractor(str(self.fc.extractor), self.fc.dims, self.fc.weights,
                                        device)
        self.ref, _ = reference_stats(dataset_source(data, self.fc.ref_n), self.extractor,
                                      self.fc, cache=bool(self.fc.cache))
        self.path = run_dir / "fid.jsonl"
        if D.current().is_main and self.path.is_file():  # resumed: drop rows to be redone
            rows = [r for r in self.path.read_text().splitlines()
                    if r.strip() and json.loads(r)["iter"] <= start]
            self.path.write_text("".join(r + "\n" for r in rows))

    @classmethod
    def create(cls, cfg: DictConfig, data: Any, device: torch.device, run_dir: Path,
               extra: dict[str, Any], start: int) -> FidMonitor | None:
        every = cfg.train.get("fid_every", 0)
        if not isinstance(every, int) or every < 0:
            raise UserError(f"train.fid_every={every!r} is not valid: a whole number >= 0 "
                            "(0 turns FID during training off).")
        return cls(cfg, data, device, run_dir, extra, start) if every else None

    def due(self, it: int, last: bool) -> bool:
        return it % self.every == 0 or last

    @property
    def best(self) -> dict[str, Any] | None:
        return self.extra.get(BEST_KEY)

    def evaluate(self, it: int, G: nn.Module, z_dim: int) -> dict[str, float | None]:
        """FID/KID of G now (a collective under torchrun); sets `improved`."""
        from ganqp_cli.sampling import latents
        z = latents(self.n, z_dim, int(self.fc.seed))
        feats = extract(generator_source(G, z, self.device, f"iter {it}"), self.extractor,
                        int(self.fc.batch), int(self.fc.workers))
        row = None
        if D.current().is_main:
            s = scores(Stats.of(feats), self.ref, self.fc, self.device)
            row = {"iter": it, "fid": s["fid"], "kid": s["kid"], "kid_std": s["kid_std"],
                   "n": int(feats.shape[0]), "extractor": self.extractor.name,
                   "dims": int(self.extractor.dims)}
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        row = D.broadcast_object(row)
        self.improved = self.best is None or row["fid"] < self.best["fid"]
        if self.improved:
            self.extra[BEST_KEY] = {"fid": row["fid"], "iter": it}
        return {"fid": row["fid"], "kid": row["kid"], "kid_std": row["kid_std"]}
