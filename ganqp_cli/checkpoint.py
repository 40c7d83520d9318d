"""Checkpoints: plain dicts of state dicts, written atomically, read with weights_only=True.

Layout of a checkpoint (all tensors, numbers, strings, lists and dicts):
    format      "ganqp-checkpoint"        version   1
    iter        generator iterations done  config    the run's resolved config (a dict)
    shape       data shape [C, H, W] or [D]
    models      Models.state_dict()        ema       EMA generator state dict
    opt_d/opt_g optimiser state dicts      scaler_d/scaler_g  AMP grad-scaler state dicts
    rng         Python / NumPy / torch / CUDA generator states
    data        {"consumed": batches drawn from the stream}
    extra       objective- or feature-owned state (e.g. best FID)
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganqp_cli.atomic import write_atomic
from ganqp_cli.checks import checkpoint_file
from ganqp_cli.errors import UserError

FORMAT = "ganqp-checkpoint"
VERSION = 1
# What a resumed run must share with its checkpoint: the networks and the objective.
IDENTITY_KEYS = ("arch", "objective", "res")
# ... less the objective's schedule, which a resumed run may change like any train.* key,
# and how BatchNorm statistics are gathered (the same parameters either way).
SCHEDULE_KEYS = ("objective.d_steps", "objective.opt_d", "objective.opt_g", "objective.reg",
                 "arch.sync_bn")


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`, so a
    crash mid-write leaves the previous file intact."""
    write_atomic(path, lambda f: torch.save(obj, f))


def load(path: str | os.PathLike, key: str = "ckpt") -> dict[str, Any]:
    """Load and check a ganqp checkpoint; bad files raise UserError naming `key` and path."""
    p = checkpoint_file(key, path)
    if not zipfile.is_zipfile(p):
        raise UserError(f"{key}={path} is not a ganqp checkpoint: not a torch.save file "
                        "(truncated, corrupt, or another format). Use a file from "
                        "<run dir>/checkpoints/.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{key}={path} is not a ganqp checkpoint: it holds Python objects "
                        "other than tensors, numbers, strings, lists and dicts.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{key}={path} is truncated or corrupt and cannot be read "
                        f"({first[:160]}); use an earlier checkpoint from the same folder."
                        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{key}={path} is a torch file but not a ganqp checkpoint (no "
                        f"'format: {FORMAT}' entry); pass a file from <run dir>/checkpoints/.")
    if obj.get("version", 0) > VERSION:
        raise UserError(f"{key}={path} was written by a newer ganqp (checkpoint version "
                        f"{obj['version']} > {VERSION}); upgrade ganqp.")
    return obj


def _flatten(d: Any, prefix: str) -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: str) -> None:
    """Refuse a resume whose networks or objective differ, naming the first differing key."""
    def identity(cfg: dict[str, Any]) -> dict[str, Any]:
        flat = {k: v for key in IDENTITY_KEYS for k, v in _flatten(cfg.get(key), key).items()}
        return {k: v for k, v in flat.items() if not k.startswith(SCHEDULE_KEYS)}

    a, b = identity(saved), identity(current)
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            raise UserError(f"cannot resume from {path}: {k} differs (checkpoint: "
                            f"{a.get(k, '<absent>')!r}, this run: {b.get(k, '<absent>')!r}). "
                            f"Use the checkpoint's value ({k}={a.get(k)}) or start a new run "
                            "directory.")


def check_finite(state: dict[str, Any]) -> None:
    """Refuse to write a state holding a NaN or inf tensor (it would replace the last good
    checkpoint with one that cannot train on); names the first such tensor."""
    for name, value in _flatten(state, "").items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and \
                not bool(torch.isfinite(value).all()):
            from ganqp_cli.errors import RunFailed
            raise RunFailed(f"not writing a checkpoint: {name} holds non-finite values; the "
                            "previous checkpoint is kept. The run diverged: lower the learning "
                            "rates or try train.amp=off.")


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # This process's GPU only: a resumed run may see another number of GPUs.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list | tuple):  # older checkpoints: one state per visible GPU
            cuda = cuda[min(torch.cuda.current_device(), len(cuda) - 1)] if cuda else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def numbered(folder: Path, it: int) -> Path:
    return folder / f"iter_{it:07d}.pt"


def prune(folder: Path, keep: int) -> None:
    """Keep the `keep` newest numbered checkpoints (last.pt and best.pt are never pruned)."""
    found = sorted(p for p in folder.glob("iter_*.pt") if re.fullmatch(r"iter_\d{7}\.pt", p.name))
    for p in found[: max(0, len(found) - keep)]:
        p.unlink(missing_ok=True)
