"""`schedule.*`: hyperparameters that follow a schedule over the images seen.

Each key of the `schedule:` node names one hyperparameter (TARGETS); its value is null (the
hyperparameter keeps its configured value), a number (a constant), or

    {kind: constant, value: V}
    {kind: linear | cosine | ramp, start: A, end: B, kimg: K, delay_kimg: 0}

which holds A for `delay_kimg` thousand images, moves from A to B over the next K thousand
(a straight line; half a cosine, slow at both ends, as R3GAN's cosine decay; or the
sigmoid-shaped ramp-up exp(-5 (1 - t)^2) of Laine and Aila, rescaled to start at A) and holds
B afterwards. Images seen: `train.batch_size` per generator iteration (R3GAN's and
StyleGAN's count), kept in the checkpoint, so a resumed run continues where it stopped even
with another batch size.

The values are computed on the host from the iteration count before each iteration (no
device synchronisation) and set where the loop reads them: the optimisers' parameter groups,
the regularisers' weights, the EMA's decay (`ema`, or `ema_kimg`: a half-life in thousands of
images, beta = 0.5 ** (batch / half-life)), ADA's p. Every scheduled value is logged in
metrics.jsonl as `sched_<key>` (the value the logged iteration used), with `kimg`, the images
seen so far / 1000, and `sched_ema_beta`, the EMA decay a scheduled EMA gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ganqp_cli import checks
from ganqp_cli.errors import UserError

KINDS = ("constant", "linear", "cosine", "ramp")
# target -> (the valid values, what it sets), checked on start and end (every shape stays
# between them)
TARGETS: dict[str, tuple[tuple[float, float, bool], str]] = {
    "lr_d": ((0.0, math.inf, False), "objective.opt_d.lr"),
    "lr_g": ((0.0, math.inf, False), "objective.opt_g.lr"),
    "beta1_d": ((0.0, 1.0, True), "objective.opt_d.betas[0]"),
    "beta2_d": ((0.0, 1.0, True), "objective.opt_d.betas[1]"),
    "beta1_g": ((0.0, 1.0, True), "objective.opt_g.betas[0]"),
    "beta2_g": ((0.0, 1.0, True), "objective.opt_g.betas[1]"),
    "r1": ((0.0, math.inf, False), "reg.r1"),
    "r2": ((0.0, math.inf, False), "reg.r2"),
    "lecam": ((0.0, math.inf, False), "reg.lecam"),
    "ema": ((0.0, 1.0, True), "the EMA decay per iteration (train.ema, without its ramp)"),
    "ema_kimg": ((0.0, math.inf, False), "the EMA half-life in thousands of images"),
    "aug_p": ((0.0, 1.0, False), "ADA's augmentation probability (aug.p_init)"),
}
RAMP_FLOOR = math.exp(-5.0)


@dataclass(frozen=True)
class Curve:
    """One schedule: `value(kimg)` for the thousands of images seen."""

    kind: str
    start: float
    end: float
    kimg: float = 1.0
    delay_kimg: float = 0.0

    def value(self, kimg: float) -> float:
        if self.kind == "constant":
            return self.start
        t = min(max((kimg - self.delay_kimg) / self.kimg, 0.0), 1.0)
        if self.kind == "cosine":
            t = 0.5 * (1.0 - math.cos(math.pi * t))
        elif self.kind == "ramp":
            t = (math.exp(-5.0 * (1.0 - t) ** 2) - RAMP_FLOOR) / (1.0 - RAMP_FLOOR)
        return self.start + (self.end - self.start) * t


def parse(key: str, spec: Any) -> Curve:
    """A schedule node (or a number) as a Curve; refuses a bad one naming `key`."""
    if checks.is_number(spec):
        return Curve("constant", float(spec), float(spec))
    form = ("a number, or {kind: linear|cosine|ramp, start: A, end: B, kimg: K} (optionally "
            "delay_kimg: D), or {kind: constant, value: V}")
    checks.require(isinstance(spec, Mapping), key, spec, form)
    kind = checks.choice(f"{key}.kind", spec.get("kind"), KINDS)
    allowed = {"kind", "value"} if kind == "constant" else {"kind", "start", "end", "kimg",
                                                            "delay_kimg"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise UserError(f"{key}.{extra[0]} is not a key of a {kind} schedule; its keys: "
                        f"{', '.join(sorted(allowed))}.")
    if kind == "constant":
        v = float(checks.number(f"{key}.value", spec.get("value")))
        return Curve(kind, v, v)
    start, end = (float(checks.number(f"{key}.{k}", spec.get(k))) for k in ("start", "end"))
    kimg = checks.number(f"{key}.kimg", spec.get("kimg"), 0, low_open=True,
                         note=" (thousands of images from start to end)")
    delay = checks.number(f"{key}.delay_kimg", spec.get("delay_kimg", 0.0), 0)
    return Curve(kind, start, end, float(kimg), float(delay))


def curves(node: Any) -> dict[str, Curve]:
    """The schedules a `schedule:` node sets (null entries left out), each checked."""
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    checks.require(isinstance(values, Mapping), "schedule", values,
                   "a node of schedules by hyperparameter, e.g. schedule.lr_d={kind: cosine, "
                   "start: 2e-4, end: 5e-5, kimg: 20000}")
    out = {}
    for name, spec in values.items():
        if name not in TARGETS:
            raise UserError(f"schedule.{name} is not a hyperparameter a schedule can set; "
                            f"valid: {', '.join(TARGETS)} (docs/training.md#schedules).")
        if spec is None:
            continue
        curve = parse(f"schedule.{name}", spec)
        (low, high, high_open), what = TARGETS[name]
        for end, v in (("start", curve.start), ("end", curve.end)):
            ok = low <= v and (v < high if high_open else v <= high)
            checks.require(ok, f"schedule.{name}" + ("" if curve.kind == "constant" else
                                                     f".{end}"), v,
                           f"{what} must lie in [{low:g}, {high:g}{')' if high_open else ']'}")
        out[name] = curve
    return out


def validate_schedule(cfg: DictConfig) -> None:
    """`ganqp train`: every schedule, and that what it sets exists in this run."""
    found = curves(cfg.get("schedule"))
    for side in ("d", "g"):
        opt = cfg.objective[f"opt_{side}"]
        for b in ("beta1", "beta2"):
            if f"{b}_{side}" in found and "betas" not in opt:
                raise UserError(f"schedule.{b}_{side} sets objective.opt_{side}.betas, which "
                                f"{opt.get('_target_')} has not: use an optimiser with betas "
                                "(torch.optim.Adam, AdamW) or leave the schedule out.")
    if "ema" in found and "ema_kimg" in found:
        raise UserError("schedule.ema and schedule.ema_kimg both set the EMA: keep one (ema: a "
                        "decay per iteration; ema_kimg: a half-life in thousands of images).")
    if ("ema" in found or "ema_kimg" in found) and not float(cfg.train.ema) > 0:
        raise UserError("train.ema=0 turns the EMA generator off, so schedule.ema / ema_kimg "
                        "has nothing to set: leave train.ema at a value > 0 (the schedule "
                        "replaces it).")
    if "aug_p" in found and not ("p_init" in cfg.aug and cfg.aug.get("target", 0) is None):
        raise UserError(f"schedule.aug_p sets ADA's probability p, which aug={cfg.aug.name} "
                        "would otherwise adapt or does not have: use aug=ada aug.target=null "
                        "(ADA's operations at a scheduled p, as R3GAN).")


class Schedule:
    """The schedules of one run, applied to its Setup (`s`) before each iteration."""

    def __init__(self, cfg: DictConfig, s: Any) -> None:
        self.curves = curves(cfg.get("schedule"))
        self.batch = int(cfg.train.batch_size)
        self.s = s
        self.base_images, self.base_iter = 0, 0  # the position: images seen at an iteration
        self.values: dict[str, float] = {}
        self.ema_beta: float | None = None  # the EMA's decay when a schedule sets it
        if any(k in self.curves for k in ("r1", "r2", "lecam")):
            s.reg.scheduled = True  # a weight starting at 0 must still be computed later
        self.apply(0)

    def images(self, it: int) -> int:
        """Images seen before iteration `it` (0-based)."""
        return self.base_images + (it - self.base_iter) * self.batch

    def apply(self, it: int) -> None:
        """Set every scheduled hyperparameter to its value before iteration `it`."""
        if not self.curves:
            return
        kimg = self.images(it) / 1000.0
        self.values = {k: c.value(kimg) for k, c in self.curves.items()}
        self.kimg = kimg
        for name, v in self.values.items():
            self._set(name, v)

    def _set(self, name: str, v: float) -> None:
        s = self.s
        if name.startswith(("lr_", "beta")):
            what, side = name.split("_")
            opt = s.opt_d if side == "d" else s.opt_g
            for group in opt.param_groups:
                if what == "lr":
                    _assign(group, "lr", v)
                else:
                    betas = list(group["betas"])
                    betas[int(what[-1]) - 1] = v
                    group["betas"] = tuple(betas)
        elif name in ("r1", "r2", "lecam"):
            setattr(s.reg, name, v)
        elif name == "ema":
            self.ema_beta = v
        elif name == "ema_kimg":
            self.ema_beta = 0.5 ** (self.batch / max(v * 1000.0, 1e-8))
        elif name == "aug_p":
            s.aug.p = v

    def stats(self) -> dict[str, float]:
        """The values in use, for metrics.jsonl."""
        if not self.curves:
            return {}
        # kimg: the images seen so far (after the iteration that used these values)
        out = {"kimg": self.kimg + self.batch / 1000.0,
               **{f"sched_{k}": v for k, v in self.values.items()}}
        if self.ema_beta is not None:
            out["sched_ema_beta"] = self.ema_beta
        return out

    def state_dict(self, it: int) -> dict[str, int]:
        return {"images": self.images(it), "iter": it}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's position (older checkpoints: none, images = iterations
        x this run's batch)."""
        if state:
            self.base_images, self.base_iter = int(state["images"]), int(state["iter"])
            self.apply(self.base_iter)


def _assign(group: dict[str, Any], key: str, v: float) -> None:
    """A parameter group's hyperparameter, in place when the optimiser keeps it as a tensor
    (capturable / fused optimisers), so no host-device synchronisation is needed."""
    import torch
    if isinstance(group[key], torch.Tensor):
        group[key].fill_(v)
    else:
        group[key] = v
