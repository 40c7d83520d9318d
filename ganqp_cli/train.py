"""`ganqp train`: the training loop, readable top to bottom.

One iteration = `objective.d_steps` critic steps, then one generator step, each on a fresh real
batch and fresh z. What the losses are is the objective's business (ganqp_cli.objectives);
this loop never looks at which objective it runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganqp_cli import checkpoint as ckpt
from ganqp_cli import distributed as D
from ganqp_cli.config import amp_mode, make, make_optimizer, validate
from ganqp_cli.data import Batches
from ganqp_cli.fid_train import FidMonitor
from ganqp_cli.logger import RunLogger
from ganqp_cli.objectives import Models, Objective


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def params_of(modules: list[nn.Module]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def set_trainable(modules: list[nn.Module], on: bool) -> None:
    for p in params_of(modules):
        p.requires_grad_(on)


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, beta: float) -> None:
    ema_p, net_p = list(ema.parameters()), list(net.parameters())
    torch._foreach_lerp_(ema_p, net_p, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """G(z) in eval mode (BatchNorm running statistics), in chunks; restores G's mode."""
    was_training = G.training
    G.eval()
    out = torch.cat([G(z[i:i + batch]).float() for i in range(0, z.shape[0], batch)])
    G.train(was_training)
    return out


class Setup:
    """Everything built from the config: data, networks, optimisers, objective."""

    def __init__(self, cfg: DictConfig, dist: D.Dist, device: torch.device) -> None:
        self.cfg, self.dist, self.device = cfg, dist, device
        self.data = make(cfg.data, "data", res=cfg.res)
        self.objective: Objective = make(cfg.objective, "objective")
        arch = make(cfg.arch, "arch")
        self.models: Models = self.objective.build(arch, tuple(self.data.shape)).to(device)
        D.broadcast_module([self.models])  # identical start on every rank
        self.z_dim: int = self.models.G.z_dim
        self.ema = copy.deepcopy(self.models.G).eval().requires_grad_(False)
        self.d_mods = self.objective.critic_modules(self.models)
        self.g_mods = self.objective.generator_modules(self.models)
        self.d_params, self.g_params = params_of(self.d_mods), params_of(self.g_mods)
        self.opt_d = make_optimizer(cfg.objective.opt_d, "objective.opt_d", self.d_params)
        self.opt_g = make_optimizer(cfg.objective.opt_g, "objective.opt_g", self.g_params)
        amp = amp_mode(cfg.train.amp) if device.type == "cuda" else "off"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def state(self, it: int, consumed: int, extra: dict[str, Any]) -> dict[str, Any]:
        rngs = [None] * self.dist.world
        if self.dist.enabled:
            torch.distributed.all_gather_object(rngs, ckpt.rng_state())
        else:
            rngs = [ckpt.rng_state()]
        return {
            "format": ckpt.FORMAT, "version": ckpt.VERSION, "iter": it,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "shape": list(self.data.shape), "z_dim": self.z_dim,
            "models": self.models.state_dict(), "ema": self.ema.state_dict(),
            "opt_d": self.opt_d.state_dict(), "opt_g": self.opt_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(), "scaler_g": self.scaler_g.state_dict(),
            "rng": rngs, "data": {"consumed": consumed}, "extra": extra,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.models.load_state_dict(state["models"])
        self.ema.load_state_dict(state["ema"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        rngs = state["rng"]
        if len(rngs) == self.dist.world:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:  # a different number of processes: continue deterministically, not identically
            seed_all(self.cfg.seed * 7919 + self.dist.rank + state["iter"])


def _apply(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           params: list[nn.Parameter]) -> None:
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    D.all_reduce_grads(params)  # every rank steps with the same averaged gradients
    scaler.step(opt)
    scaler.update()


def critic_step(s: Setup, real: torch.Tensor, z: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One critic update (gradients averaged over ranks); returns the loss and its stats."""
    with s.autocast():
        loss, stats = s.objective.critic_loss(s.models, real, z)
    _apply(loss, s.opt_d, s.scaler_d, s.d_params)
    s.objective.after_critic_step(s.models)  # e.g. WGAN's weight clipping
    return loss, stats


def generator_step(s: Setup, real: torch.Tensor, z: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One generator (and encoder) update; returns the loss and its stats."""
    with s.autocast():
        loss, stats = s.objective.generator_loss(s.models, real, z)
    _apply(loss, s.opt_g, s.scaler_g, s.g_params)
    return loss, stats


def find_resume(cfg: DictConfig, ckpt_dir: Path) -> tuple[str, Path] | None:
    if cfg.resume:
        return "resume", Path(cfg.resume)
    if (ckpt_dir / "last.pt").is_file():
        return "checkpoint", ckpt_dir / "last.pt"
    return None


def trim_metrics(path: Path, last_iter: int) -> None:
    """On resume, drop metric rows logged after the checkpoint (they will be redone)."""
    if not path.is_file():
        return
    rows = [r for r in path.read_text().splitlines()
            if r.strip() and json.loads(r).get("iter", 0) <= last_iter]
    path.write_text("".join(r + "\n" for r in rows))


def write_status(run_dir: Path, status: str, it: int, total: int) -> None:
    (run_dir / "status.json").write_text(json.dumps(
        {"status": status, "iter": it, "iters": total, "time": time.time()}) + "\n")


def train(cfg: DictConfig) -> dict[str, float]:
    dist = D.init_process_group()
    validate(cfg, dist.world)
    device = D.device_for(str(cfg.device), dist)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(t.tf32)

    seed_all(cfg.seed)  # networks start identical on every rank
    s = Setup(cfg, dist, device)
    seed_all(cfg.seed * 7919 + dist.rank + 1)  # then each rank draws its own z
    local_b = t.batch_size // dist.world

    ckpt_dir = run_dir / "checkpoints"
    start, consumed, extra = 0, 0, {}
    found = D.broadcast_object(find_resume(cfg, ckpt_dir))  # rank 0 decides for all
    if found:
        key, path = found
        state = ckpt.load(path, key=key)
        ckpt.check_compatible(state["config"], OmegaConf.to_container(cfg, resolve=True),
                              str(path))
        s.restore(state)
        start, consumed, extra = state["iter"], state["data"]["consumed"], state["extra"]
        if dist.is_main:
            trim_metrics(run_dir / "metrics.jsonl", start)
    batches = Batches(s.data, local_b, cfg.seed, device, dist.rank, dist.world, t.workers,
                      start_batch=consumed)
    fixed_z = torch.randn(t.sample_n, s.z_dim, generator=torch.Generator().manual_seed(cfg.seed)
                          ).to(device)

    fid = FidMonitor.create(cfg, s.data, device, run_dir, extra, start)
    log = RunLogger(run_dir, t.iters, start, enabled=dist.is_main)
    n_g = sum(p.numel() for p in s.models.G.parameters())
    n_d = sum(p.numel() for p in s.models.parameters()) - n_g
    log.info(f"ganqp train: {cfg.objective.name} | arch {cfg.arch.name} | data {s.data.name} "
             f"({len(s.data)} items, shape {tuple(s.data.shape)}) | G {n_g / 1e6:.2f}M, "
             f"critic/encoder {n_d / 1e6:.2f}M params | {device} x{dist.world} | "
             f"batch {t.batch_size} | run dir {run_dir}"
             + (f" | resumed at iter {start} from {found[1]}" if found else ""))
    if dist.is_main:
        write_status(run_dir, "running", start, t.iters)

    def save_checkpoint(it: int) -> None:
        state = s.state(it, batches.consumed, extra)  # collective: every rank takes part
        if dist.is_main:
            ckpt.save_atomic(state, ckpt_dir / "last.pt")
            if t.keep_ckpts:
                ckpt.save_atomic(state, ckpt.numbered(ckpt_dir, it))
                ckpt.prune(ckpt_dir, t.keep_ckpts)

    def save_samples(it: int) -> None:
        if dist.is_main:
            G = s.ema if t.sample_ema and t.ema > 0 else s.models.G
            img = s.data.render(generate(G, fixed_z))
            log.image(it, "samples", img, run_dir / "samples" / f"iter_{it:07d}.png")

    acc: dict[str, torch.Tensor] = {}
    n_acc, t_last, it_last = 0, time.time(), start
    it = start
    try:
        while it < t.iters:
            # ---- critic phase: d_steps steps, generator frozen -------------------------
            set_trainable(s.g_mods, False)
            set_trainable(s.d_mods, True)
            for _ in range(cfg.objective.d_steps):
                loss_d, stats_d = critic_step(s, next(batches),
                                              torch.randn(local_b, s.z_dim, device=device))
                _accumulate(acc, {"d_loss": loss_d, **stats_d}, 1.0 / cfg.objective.d_steps)

            # ---- generator phase: one step, critic frozen ------------------------------
            set_trainable(s.d_mods, False)
            set_trainable(s.g_mods, True)
            loss_g, stats_g = generator_step(s, next(batches),
                                             torch.randn(local_b, s.z_dim, device=device))
            _accumulate(acc, {"g_loss": loss_g, **{f"g_{k}": v for k, v in stats_g.items()}})
            if t.ema > 0:
                update_ema(s.ema, s.models.G, min(t.ema, (1 + it) / (10 + it)))
            it += 1
            n_acc += 1
            log.step(it)

            # ---- periodic work -------------------------------------------------------------
            last = it == t.iters
            fid_due = fid is not None and fid.due(it, last)
            if it % t.log_every == 0 or last or fid_due:
                values = D.all_reduce_mean({k: v / n_acc for k, v in acc.items()})
                now = time.time()
                rate = (it - it_last) / max(now - t_last, 1e-9)
                draws = cfg.objective.d_steps + 1
                values.update(it_per_s=rate, img_per_s=rate * t.batch_size * draws,
                              elapsed_s=now - log.t0)
                if not all(np.isfinite(v) for v in values.values()):
                    log.info(f"warning: non-finite loss at iter {it}: {values}")
                if fid_due:  # the generator `ganqp fid ckpt=...` uses by default
                    values.update(fid.evaluate(it, s.ema if t.ema > 0 else s.models.G, s.z_dim))
                log.log(it, values)
                acc, n_acc, t_last, it_last = {}, 0, time.time(), it  # rates exclude FID time
            if fid_due and fid.improved:  # collective: every rank takes part
                state = s.state(it, batches.consumed, extra)
                if dist.is_main:
                    ckpt.save_atomic(state, ckpt_dir / "best.pt")
            if (t.sample_every and it % t.sample_every == 0) or last:
                save_samples(it)
            if (t.ckpt_every and it % t.ckpt_every == 0) or last:
                save_checkpoint(it)
    except BaseException:
        if dist.is_main:
            write_status(run_dir, "failed", it, t.iters)
        raise
    finally:
        log.close()
    if dist.enabled:
        if not D.ranks_agree([s.models]):
            raise RuntimeError("ranks hold different parameters after training (a bug)")
        log.info(f"parameters identical on all {dist.world} ranks")
    if dist.is_main:
        write_status(run_dir, "done", it, t.iters)
        log.info(f"done: {it} iterations; samples in {run_dir / 'samples'}, "
                 f"checkpoint {ckpt_dir / 'last.pt'}")
    D.barrier()
    D.shutdown()  # a rank exiting with the group still open can abort its peers
    return {"iter": it}


def _accumulate(acc: dict[str, torch.Tensor], values: dict[str, torch.Tensor],
                weight: float = 1.0) -> None:
    for k, v in values.items():
        v = v.detach().float() * weight
        acc[k] = acc[k] + v if k in acc else v
