"""Shared checks for user values: each names the key, the value and what would be valid.

Every command validates its whole config with these (ganqp_cli.validation) before any work
starts; constructors and deeper code may assume what was checked here.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ganqp_cli.errors import UserError

IMAGE_OUT_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def fail(key: str, value: Any, valid: str) -> UserError:
    """The one-paragraph error for `key=value`, saying what is valid."""
    return UserError(f"{key}={value!r} is not valid: {valid}.")


def require(ok: bool, key: str, value: Any, valid: str) -> None:
    if not ok:
        raise fail(key, value, valid)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def whole(key: str, value: Any, low: int = 1, high: int | None = None,
          allow_none: bool = False, note: str = "") -> Any:
    """A whole number in [low, high] (or null when allowed)."""
    if value is None and allow_none:
        return value
    span = f">= {low}" if high is None else f"from {low} to {high}"
    valid = f"a whole number {span}" + (" or null" if allow_none else "") + note
    require(is_int(value) and value >= low and (high is None or value <= high), key, value,
            valid)
    return value


def number(key: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, allow_none: bool = False,
           note: str = "") -> Any:
    """A finite number in the given interval (open or closed at each end)."""
    if value is None and allow_none:
        return value
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    valid = "a number" + (" " + " and ".join(parts) if parts else "") + \
        (" or null" if allow_none else "") + note
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    require(ok, key, value, valid)
    return value


def choice(key: str, value: Any, options: Iterable[Any], note: str = "") -> Any:
    options = list(options)
    require(value in options, key, value,
            "one of " + ", ".join(str(o) for o in options) + note)
    return value


def boolean(key: str, value: Any) -> bool:
    require(isinstance(value, bool), key, value, "true or false")
    return value


def device(key: str, value: Any) -> str:
    """auto, cpu, cuda or cuda:N, with N a GPU this machine has."""
    dev = str(value)
    ok = dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())
    require(ok, key, value, "auto, cpu, cuda or cuda:N")
    if dev.startswith("cuda"):
        import torch
        require(torch.cuda.is_available(), key, value,
                "CUDA is not available on this machine; use device=cpu or device=auto")
        if dev.startswith("cuda:"):
            n = torch.cuda.device_count()
            require(int(dev[5:]) < n, key, value, f"this machine has {n} GPU(s): cuda:0 to "
                    f"cuda:{n - 1}")
    return dev


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def writable_dir(key: str, value: Any, shown: Any = None) -> Path:
    """A folder that exists and is writable, or can be created (its nearest existing
    ancestor is a writable folder, not a file). `shown`: the value to name in the message
    (the file given, when `value` is its folder)."""
    text, shown = str(value), value if shown is None else shown
    require(bool(text.strip()), key, shown, "a path")
    path = Path(text).expanduser()
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UserError(f"{key}={shown}: {base} is a file, so no folder can be made at "
                        f"{path}. Choose a path whose parent is a folder.")
    reason = _write_refused(base)
    if reason:
        raise UserError(f"{key}={shown}: {base} is not writable ({reason}). Choose a writable "
                        "location.")
    return path


def _write_refused(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None. A real attempt, not os.access: root
    passes every permission check, yet a read-only mount or /proc still refuses."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".ganqp-write-test-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def output_file(key: str, value: Any, exts: tuple[str, ...] = IMAGE_OUT_EXTS) -> Path:
    """A file path to write: a known extension, not a folder, in a writable place."""
    text = str(value)
    require(bool(text.strip()) and not text.endswith(("/", os.sep)), key, value,
            "a file path (not a folder), e.g. " + f"out=result{exts[0]}")
    path = Path(text).expanduser()
    require(path.suffix.lower() in exts, key, value,
            "a file name ending in " + ", ".join(exts))
    if path.is_dir():
        raise UserError(f"{key}={value} is a folder; name a file, e.g. "
                        f"{key}={path / ('out' + exts[0])}.")
    writable_dir(key, path.parent if str(path.parent) else ".", shown=value)
    return path


def existing_dir(key: str, value: Any, what: str = "a folder") -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise UserError(f"{key}={value} is not a directory: pass {what}.")
    return path


def checkpoint_file(key: str, value: Any) -> Path:
    """A checkpoint path naming a file (what it holds is checked when it is loaded)."""
    path = Path(str(value)).expanduser()
    if path.is_dir():
        inside = path / "checkpoints" / "last.pt"
        example = inside if inside.is_file() else path / "last.pt"
        raise UserError(f"{key}={value} is a folder, not a checkpoint file; pass the file, "
                        f"e.g. {key}={example}.")
    if not path.is_file():
        raise UserError(f"{key}={value}: no such checkpoint file. Checkpoints are written to "
                        "<run dir>/checkpoints/last.pt (and best.pt, iter_NNNNNNN.pt).")
    return path
