"""Everything a run builds from its config (data, networks, optimisers, mixed precision) and
its resumable state: what `checkpoints/last.pt` holds and how it is put back."""

from __future__ import annotations

import contextlib
import copy
import random
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganqp_cli import augment, syncbn
from ganqp_cli import checkpoint as ckpt
from ganqp_cli import distributed as dist_
from ganqp_cli.classes import class_counts, run_classes
from ganqp_cli.config import amp_mode, make, make_optimizer
from ganqp_cli.generate import choose
from ganqp_cli.networks import ConditionalArch
from ganqp_cli.objectives import Models, Objective
from ganqp_cli.regularizers import build_regularizers
from ganqp_cli.schedules import Schedule
from ganqp_cli.training import compiling

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_amp(mode: str, device: torch.device) -> str:
    """`train.amp=auto`: bf16 on a GPU with bf16 support (no grad scaler needed, the range
    of fp32), else off; the CPU gains nothing from autocast on small convolutions."""
    if mode != "auto":
        return mode
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "off"


def layout(fmt: torch.memory_format | None) -> dict[str, torch.memory_format]:
    """`memory_format=` for Module.to / Tensor.to when a layout is set, else nothing."""
    return {} if fmt is None else {"memory_format": fmt}


def params_of(modules: list[nn.Module]) -> list[nn.Parameter]:
    """The parameters of `modules`, each once (O-GAN's critic is also its encoder)."""
    seen: dict[int, nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


class Setup:
    """The data set, the networks and their EMA copy, one optimiser and grad scaler per
    player, and the autocast settings of one run."""

    def __init__(self, cfg: DictConfig, dist: dist_.Dist, device: torch.device) -> None:
        self.cfg, self.dist, self.device = cfg, dist, device
        self.data = make(cfg.data, "data", res=cfg.res)
        # cond=true: the data's class names and counts (None: unconditional)
        self.classes = run_classes(cfg.get("cond", False), self.data)
        self.class_counts = class_counts(self.data, len(self.classes)) if self.classes else None
        self.objective: Objective = make(cfg.objective, "objective")
        arch = make(cfg.arch, "arch")
        if self.classes is not None:  # the networks take the class
            arch = ConditionalArch(arch, len(self.classes))
        models = self.objective.build(arch, tuple(self.data.shape))
        if cfg.arch.get("sync_bn", False):  # the networks stay free of distributed code
            models = syncbn.convert(models, device.type)
        # train.channels_last (auto: on CUDA): conv weights, and the batches (Batches), in
        # NHWC; the EMA copy below inherits the layout
        self.memory_format = compiling.memory_format(cfg.train.channels_last, device,
                                                     tuple(self.data.shape))
        self.models: Models = models.to(device, **layout(self.memory_format))
        dist_.broadcast_module([self.models])  # identical start on every rank
        self.z_dim: int = self.models.G.z_dim
        self.ema = copy.deepcopy(self.models.G).eval().requires_grad_(False)
        self.d_mods = self.objective.critic_modules(self.models)
        self.g_mods = self.objective.generator_modules(self.models)
        self.d_params, self.g_params = params_of(self.d_mods), params_of(self.g_mods)
        obj = cfg.objective
        self.opt_d = make_optimizer(obj.opt_d, "objective.opt_d", self.d_params, device)
        self.opt_g = make_optimizer(obj.opt_g, "objective.opt_g", self.g_params, device)
        amp = resolve_amp(amp_mode(cfg.train.amp), device)
        self.amp = amp
        self.amp_dtype = AMP_DTYPES.get(amp)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.local_batch = int(cfg.train.batch_size) // dist.world
        # Augmentation hooks the critic's image inputs (the objectives never see it); its
        # random draws are for the global batch, this rank's rows (ranks agree, any world).
        augment.set_uniform(lambda n, k, dev: dist_.global_rand(n, k, device=dev))
        self.aug = augment.build_augment(cfg.aug)
        self.aug.attach(self.models, self.objective, tuple(self.data.shape))
        self.reg = build_regularizers(cfg.reg)
        self.schedule = Schedule(cfg, self)  # schedule.*: sets the above before each iteration
        self.notes: list[str] = []  # lines for the run's log
        if compiling.compile_wanted(cfg.train.compile):
            self.notes.append(self._compile())

    def _compile(self) -> str:
        """train.compile: after the EMA copy (never compiled: it only samples) and the
        augmentation's hooks (they stay outside the compiled code)."""
        if not torch._dynamo.is_dynamo_supported():
            return ("train.compile: not compiled: torch.compile does not support this "
                    "Python or platform")
        why = compiling.why_not_critic(self.objective, self.reg,
                                       bool(self.cfg.arch.get("sync_bn", False)),
                                       self.dist.world)
        return compiling.compile_networks(self.g_mods, self.d_mods, why)

    @property
    def keeps_ema(self) -> bool:
        return float(self.cfg.train.ema) > 0

    def generator(self, want_ema: bool = True) -> nn.Module:
        """The generator that samples, FID and `ganqp sample` use (generate.choose's rule)."""
        return choose(self.models.G, self.ema if self.keeps_ema else None, want_ema)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def counts(self) -> tuple[int, int]:
        """(generator, critic + encoder) parameter counts."""
        n_g = sum(p.numel() for p in self.models.G.parameters())
        return n_g, sum(p.numel() for p in self.models.parameters()) - n_g

    def state(self, it: int, consumed: int, extra: dict[str, Any]) -> dict[str, Any]:
        """The full training state (a collective under torchrun: every rank calls it)."""
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
            "aug": self.aug.state_dict(), "reg": self.reg.state_dict(),
            **({"classes": self.classes, "class_counts": self.class_counts}
               if self.classes is not None else {}),
            "schedule": self.schedule.state_dict(it),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.models.load_state_dict(state["models"])
        self.ema.load_state_dict(state["ema"])
        load_optimizer(self.opt_d, state["opt_d"])
        load_optimizer(self.opt_g, state["opt_g"])
        self.aug.load_state_dict(state.get("aug", {}))  # older checkpoints have neither
        self.reg.load_state_dict(state.get("reg", {}))
        self.schedule.load_state_dict(state.get("schedule", {}))
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        # Every rank draws alike (z and noise for the global batch, sliced per rank), so
        # rank 0's state continues the run on any number of processes.
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world else rngs[0])


def load_optimizer(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """The saved optimiser state (moments, step counts) under this run's hyperparameters:
    `objective.opt_d.lr=...` given to a resumed run takes effect (load_state_dict alone
    would bring back the checkpoint's lr, betas and the rest)."""
    configured = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict(saved)
    for group, settings in zip(opt.param_groups, configured, strict=True):
        group.update(settings)
