"""What happens every so many iterations: the log line (statistics reduced over ranks and
the log interval), FID and best.pt, sample grids, checkpoints.

Before anything reads the networks (samples, FID, checkpoints) the ranks' BatchNorm
statistics are averaged, and every checkpoint first checks that all ranks hold the same
parameters and buffers, so what is saved is what every rank trains with.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganqp_cli import checkpoint as ckpt
from ganqp_cli import distributed as dist_
from ganqp_cli.classes import class_grid
from ganqp_cli.data import Batches
from ganqp_cli.generate import generate
from ganqp_cli.logger import RunLogger
from ganqp_cli.training.phases import Guard
from ganqp_cli.training.setup import Setup


class Meter:
    """Weighted sums of step statistics since the last log line, kept on the device (no host
    sync per step); `reduce` averages them over the interval and the ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.iters = 0

    def add(self, logged: list[tuple[dict[str, torch.Tensor], float]]) -> None:
        for values, weight in logged:
            for k, v in values.items():
                v = v.detach().float() * weight
                self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.iters += 1

    def reduce(self) -> dict[str, float]:
        n = max(self.iters, 1)
        out = dist_.all_reduce_mean({k: v / n for k, v in self.sums.items()})
        self.sums, self.iters = {}, 0
        return out


class Periodic:
    """The periodic work of one run; `after(it)` is called after every iteration."""

    def __init__(self, s: Setup, run_dir: Path, log: RunLogger, batches: Batches,
                 fid: Any, extra: dict[str, Any], guard: Guard) -> None:
        self.s, self.run_dir, self.log, self.batches, self.fid = s, run_dir, log, batches, fid
        self.extra, self.guard = extra, guard
        # The running totals log lines carry live in the checkpoint's `extra`, so that a
        # resumed run continues them instead of counting from zero again.
        self.totals: dict[str, float] = extra.setdefault("totals", {})
        guard.skipped = int(self.totals.get("skipped_steps", guard.skipped))
        self.saved_at: int | None = None  # the iteration of the last last.pt
        self.synced_at: int | None = None  # ... and of the last buffer average
        self.t = s.cfg.train
        self.ckpt_dir = run_dir / "checkpoints"
        self.meter = Meter()
        self.t_last, self.it_last = time.time(), 0
        g = torch.Generator().manual_seed(int(s.cfg.seed))
        self.fixed_z = torch.randn(int(self.t.sample_n), s.z_dim, generator=g).to(s.device)
        # cond=true: one row per class, each column one z (ganqp sample's default grid)
        self.fixed_z, self.fixed_y, self.nrow = class_grid(self.fixed_z, s.classes)

    def start(self, it: int) -> None:
        self.t_last, self.it_last = time.time(), it

    def after(self, it: int) -> None:
        t, last = self.t, it == int(self.t.iters)
        fid_due = self.fid is not None and self.fid.due(it, last)
        sample_due = bool(t.sample_every and it % t.sample_every == 0) or last
        ckpt_due = bool(t.ckpt_every and it % t.ckpt_every == 0) or last
        if fid_due or sample_due or ckpt_due:
            self.sync_buffers(it)
        if it % t.log_every == 0 or last or fid_due:
            self.log_line(it, fid_due)
        if fid_due and self.fid.improved:
            self.save("best.pt", it, numbered=False)
        if sample_due:
            self.save_samples(it)
        if ckpt_due:
            self.checkpoint(it)

    def log_line(self, it: int, fid_due: bool) -> None:
        self.guard.check()  # the skipped-update counts, read where the device is read anyway
        values = self.meter.reduce()
        now = time.time()
        rate = (it - self.it_last) / max(now - self.t_last, 1e-9)
        draws = int(self.s.cfg.objective.d_steps) + 1
        values.update(it_per_s=rate, img_per_s=rate * int(self.t.batch_size) * draws,
                      elapsed_s=now - self.log.t0, **self.counters_now(), **self.s.aug.stats(),
                      **self.s.schedule.stats())
        if not all(np.isfinite(v) for v in values.values()):
            self.log.info(f"warning: non-finite statistics at iter {it}: {values}")
        if fid_due:  # the generator `ganqp fid ckpt=...` uses by default
            values.update(self.fid.evaluate(it, self.s.generator(), self.s.z_dim))
        self.log.log(it, values)
        self.t_last, self.it_last = time.time(), it  # rates exclude FID time

    def counters_now(self) -> dict[str, float]:
        """Running totals that every log line carries (skipped updates, skipped images)."""
        self.totals["skipped_steps"] = float(self.guard.skipped)
        for k, v in self.batches.pop_stats().items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        return {k: float(v) for k, v in self.totals.items()}

    def save_samples(self, it: int) -> None:
        if self.s.dist.is_main:
            G = self.s.generator(want_ema=bool(self.t.sample_ema))
            img = self.s.data.render(generate(G, self.fixed_z, batch=256, labels=self.fixed_y),
                                     self.nrow)
            self.log.image(it, "samples", img, self.run_dir / "samples" / f"iter_{it:07d}.png")

    def save(self, name: str, it: int, numbered: bool) -> None:
        """Write the training state as checkpoints/<name> (a collective: every rank)."""
        self.guard.check()  # no checkpoint once the guard's patience ran out
        self.counters_now()  # totals up to this iteration, also between log lines
        state = self.s.state(it, self.batches.consumed, self.extra)

        def write() -> None:
            ckpt.check_finite(state)
            ckpt.save_atomic(state, self.ckpt_dir / name)
            if numbered and self.t.keep_ckpts:
                ckpt.save_atomic(state, ckpt.numbered(self.ckpt_dir, it))
                ckpt.prune(self.ckpt_dir, int(self.t.keep_ckpts))
        # Rank 0 writes; the others learn at once if it failed, and stop with its reason.
        dist_.on_main(write, f"writing checkpoints/{name} at iteration {it}")

    def sync_buffers(self, it: int) -> None:
        """Average the ranks' buffers once after iteration `it` (a collective)."""
        if self.synced_at != it:
            dist_.average_buffers([self.s.models, self.s.ema])
            self.synced_at = it

    def checkpoint(self, it: int) -> None:
        self.sync_buffers(it)  # also when a stop signal, not the schedule, asks for it
        dist_.check_ranks_agree({"models": self.s.models, "ema": self.s.ema})
        self.save("last.pt", it, numbered=True)
        self.saved_at = it
