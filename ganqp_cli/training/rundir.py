"""The run directory's bookkeeping: its lock, status.json, which checkpoint to resume from,
and the log rows a crash leaves after the last checkpoint.

The lock: one live `ganqp train` per run directory. `run.lock` is held with flock (the
kernel releases it when the holder dies, however it dies) and names the host and pid of its
holder, so a second run is refused with who holds it, and a lock file left by a dead process
is taken over with a notice.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ganqp_cli import checks
from ganqp_cli.atomic import write_atomic
from ganqp_cli.errors import UserError, report_and_exit

LOCK_NAME = "run.lock"
# Run directories this process's command created (they did not exist when it started): one
# refused for bad input before it wrote a checkpoint is removed again (cli.py).
CREATED: set[Path] = set()


class RunLock:
    """An exclusive, non-blocking lock on a run directory, released on exit or death."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.fd: int | None = None
        self.previous: dict | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise self.in_use(holder) from None
        self.previous = _read_holder(fd) or None
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self.fd = fd
        return self

    def in_use(self, holder: dict) -> UserError:
        who = (f"host {holder.get('host')}, pid {holder.get('pid')}, since "
               f"{holder.get('since')}") if holder else "another process"
        return UserError(f"the run directory {self.path.parent} is in use by a running "
                         f"`ganqp train` ({who}). Wait for it to finish, stop it, or choose "
                         "another directory with hydra.run.dir=DIR.")

    def check_free(self) -> None:
        """Refuse now if a live process holds the lock; takes nothing (a probe)."""
        if not self.path.is_file():
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self.in_use(_read_holder(fd)) from None
        finally:
            os.close(fd)  # closing drops the probe's own shared lock

    def takeover_notice(self) -> str | None:
        """The notice for a lock file whose holder died without releasing it (kill -9, a
        node lost): a clean exit empties the file, so a record left in it means that."""
        prev = self.previous
        if not prev:
            return None
        return (f"ganqp: notice: {self.path} named host {prev.get('host')}, pid "
                f"{prev.get('pid')} (since {prev.get('since')}), which no longer holds it: "
                "that run ended without releasing it (killed?); taking over the directory.")

    def release(self, remove: bool = False) -> None:
        """Unlock; `remove` deletes the lock file too (a run refused before it started)."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty lock file: nobody held it at the end
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def write_status(run_dir: Path, status: str, it: int, total: int, **extra: object) -> None:
    """status.json, replaced atomically (a reader never sees half a file)."""
    text = json.dumps({"status": status, "iter": it, "iters": total, "time": time.time(),
                       **extra}) + "\n"
    write_atomic(run_dir / "status.json", lambda f: f.write(text.encode()))


def find_resume(cfg: DictConfig, ckpt_dir: Path) -> tuple[str, Path] | None:
    """(config key, path) of the checkpoint to resume from: `resume=PATH`, else the run
    directory's own last.pt, else None (a fresh run)."""
    if cfg.resume:
        return "resume", Path(str(cfg.resume))
    if (ckpt_dir / "last.pt").is_file():
        return "checkpoint", ckpt_dir / "last.pt"
    return None


def trim_rows(path: Path, last_iter: int) -> None:
    """Drop the JSON rows logged after iteration `last_iter` (a crash after the checkpoint
    leaves them; the resumed run writes them again). A torn last line is dropped too."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("iter", 0) <= last_iter:
            keep.append(line)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(r + "\n" for r in keep))
    os.replace(tmp, path)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Temporary files a killed run left: checkpoints being written (save_atomic's
    `checkpoints/.NAME.*.tmp`), status.json and trimmed logs being replaced (`.NAME.*.tmp`).
    The lock guarantees that no live writer owns them."""
    stale = [p for folder in (run_dir, run_dir / "checkpoints") if folder.is_dir()
             for p in sorted(folder.glob(".*.tmp")) if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class RunDirCheck(Callback):
    """Before Hydra writes its `.hydra/` record into the run directory: refuse a directory
    that cannot be made or written (under a file, read-only) or that a live `ganqp train`
    holds, so that a refused run changes nothing there. Under torchrun (the group exists
    by now) rank 0 checks and tells the others, so every rank exits 2 and one says why."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        path = self._check(config, "hydra.run.dir", lock=True)
        if path is not None and not path.exists():
            CREATED.add(path.resolve())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir", lock=False)  # each job locks its own

    @staticmethod
    def _check(config: DictConfig, key: str, lock: bool) -> Path | None:
        from ganqp_cli import distributed as dist_
        try:
            value = OmegaConf.select(config, key)
        except Exception:  # noqa: BLE001 - Hydra itself reports a bad interpolation
            return None
        refused = None
        if dist_.current().is_main:  # rank 0 alone: the others would see its lock
            try:
                path = checks.writable_dir(key, value)
                if lock and path.is_dir():
                    RunLock(path).check_free()
            except UserError as err:
                refused = str(err)
        refused = dist_.broadcast_object(refused)
        if refused:
            report_and_exit(UserError(refused))
        return Path(str(value)).expanduser()
