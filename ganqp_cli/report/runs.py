"""Reading run directories tolerantly: a run still being written, killed or never started
is read for what it has, and what it lacks is said in `Run.notes` rather than raised.

A run directory is a folder holding `.hydra/config.yaml` from `ganqp train`
(docs/training.md#the-run-directory): metrics.jsonl, fid.jsonl, status.json and
samples/iter_NNNNNNN.png, any of which may be missing or cut short.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml's loader: a thousand configs read in a fraction of the pure-Python time
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader

GRID = re.compile(r"iter_(\d+)\.png$")
# Overrides that change where or how fast a job runs, not what it computes.
IGNORED_KEYS = ("data.root", "resume", "fid.weights", "device", "train.workers",
                "train.threads", "fid.workers", "fid.batch", "hydra.", "logger")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    overrides: list[str]
    status: str                       # done | running | interrupted | failed | not started
    reason: str                       # why it failed or stopped, "" if nothing to say
    iter: int                         # iterations done (status.json, else the last row)
    iters: int                        # iterations planned
    updated: float | None             # status.json's time of the last change
    metrics: list[dict[str, Any]]     # metrics.jsonl rows, by iteration
    evals: list[dict[str, Any]]       # fid.jsonl rows, by iteration
    grids: list[tuple[int, Path]]     # sample grids, by iteration
    notes: list[str] = field(default_factory=list)  # what is missing or partial
    key: str = ""                     # its path relative to the folder reported on
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # report/stats.py's

    def get(self, dotted: str, default: Any = None) -> Any:
        """A config value by its dotted key (`train.batch_size`)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def objective(self) -> str:
        return str(self.get("objective.name", "?"))

    @property
    def seed(self) -> int:
        seed = self.get("seed", 0)
        return int(seed) if isinstance(seed, int) else 0

    @property
    def extractor(self) -> str:
        found = [r["extractor"] for r in self.evals if isinstance(r.get("extractor"), str)]
        return found[-1] if found else str(self.get("fid.extractor", "inception"))

    @property
    def command(self) -> str:
        """The command line that made this run (and resumes it in its directory)."""
        return shlex.join(["ganqp", "train", *self.overrides,
                           f"hydra.run.dir={self.path.resolve()}"])


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of a JSON-lines log with an `iter`, by iteration (the last row of an
    iteration wins), and a note on what could not be read (None: the file read whole)."""
    if not path.is_file():
        return [], None
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return [], f"{path.name} could not be read ({err.strerror})"
    rows: dict[int, dict[str, Any]] = {}
    bad, lines = 0, text.splitlines()
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            bad += 0 if not line.strip() else 1
            continue
        if isinstance(row, dict) and isinstance(row.get("iter"), int):
            rows[row["iter"]] = {k: _number(v) for k, v in row.items()}
    note = None
    if bad:
        last_torn = lines and not text.endswith("\n") and bad == 1
        note = (f"{path.name}: its last line is incomplete (being written)" if last_torn
                else f"{path.name}: {bad} unreadable line(s) skipped")
    return [rows[i] for i in sorted(rows)], note


def _number(v: Any) -> Any:
    """NaN and infinities (logged as null by ganqp, as NaN by hand-written rows) as None."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")
_ABSENT = object()


class Unresolved(Exception):
    """An interpolation the quick resolver does not know (a resolver other than oc.select
    and oc.env): OmegaConf resolves the config instead."""


def _lookup(cfg: dict[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return _ABSENT if node == "???" else node


def _default(text: str) -> Any:
    return yaml.load(text, Loader=_Loader) if text.strip() else None


def _resolve_one(cfg: dict[str, Any], expr: str, depth: int) -> Any:
    if expr.startswith("oc.select:"):
        key, _, default = expr[len("oc.select:"):].partition(",")
        v = _lookup(cfg, key.strip())
        return _default(default) if v is _ABSENT else _resolve(cfg, v, depth + 1)
    if expr.startswith("oc.env:"):
        name, _, default = expr[len("oc.env:"):].partition(",")
        got = os.environ.get(name.strip())
        return got if got is not None else _default(default)
    if ":" in expr or expr.startswith("."):
        raise Unresolved(expr)
    v = _lookup(cfg, expr.strip())
    if v is _ABSENT:
        raise Unresolved(expr)
    return _resolve(cfg, v, depth + 1)


def _resolve(cfg: dict[str, Any], v: Any, depth: int = 0) -> Any:
    """`v` with the interpolations ganqp's configs use (`${a.b}`, `${oc.select:a.b,d}`,
    `${oc.env:NAME,d}`) resolved: OmegaConf's answer, a tenth of its time (a report of a
    thousand runs reads a thousand configs)."""
    if depth > 20:
        raise Unresolved("an interpolation cycle")
    if isinstance(v, dict):
        return {k: _resolve(cfg, x, depth) for k, x in v.items()}
    if isinstance(v, list):
        return [_resolve(cfg, x, depth) for x in v]
    if not isinstance(v, str) or "${" not in v:
        return v
    whole = INTERPOLATION.fullmatch(v)
    if whole:
        return _resolve_one(cfg, whole.group(1), depth)
    return INTERPOLATION.sub(lambda m: str(_resolve_one(cfg, m.group(1), depth)), v)


def read_config(run: Path) -> tuple[dict[str, Any], str | None]:
    """.hydra/config.yaml with its interpolations resolved where they can be (`res` and the
    train.* keys read a data set's preset through them)."""
    text = (run / ".hydra" / "config.yaml").read_text()
    raw = yaml.load(text, Loader=_Loader) or {}
    if not isinstance(raw, dict):
        return {}, "its .hydra/config.yaml is not a mapping"
    if "${" not in text:
        return raw, None
    try:
        return _resolve(raw, raw), None
    except Unresolved:
        pass
    from omegaconf import OmegaConf
    try:
        return OmegaConf.to_container(OmegaConf.create(raw), resolve=True), None
    except Exception as err:  # noqa: BLE001 - an env variable or resolver unknown here
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        return raw, f"config interpolations left unresolved ({why})"


def read_status(run: Path, metrics: list[dict[str, Any]], iters: int
                ) -> tuple[dict[str, Any], str | None]:
    path = run / "status.json"
    last = metrics[-1]["iter"] if metrics else 0
    fallback = {"status": "not started" if not metrics else "running", "iter": last,
                "iters": iters}
    if not path.is_file():
        note = ("no status.json: not started yet" if not metrics
                else "no status.json (killed before its first status?)")
        return fallback, note
    try:
        status = json.loads(path.read_text())
        if not isinstance(status, dict) or "status" not in status:
            raise ValueError
    except (OSError, ValueError):
        return fallback, "status.json is unreadable"
    return {**fallback, **status}, None


def read_grids(run: Path) -> list[tuple[int, Path]]:
    folder = run / "samples"
    if not folder.is_dir():
        return []
    found = ((GRID.search(p.name), p) for p in folder.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def _reason(status: dict[str, Any]) -> str:
    if status.get("reason"):
        return str(status["reason"])
    if status.get("signal"):
        return f"stopped by {status['signal']}" + (" (aborted)" if status.get("aborted") else
                                                   "; resumes with the same command")
    return ""


def load_run(path: Path) -> Run:
    config, note = read_config(path)
    notes = [note] if note else []
    overrides: list[str] = []
    over = path / ".hydra" / "overrides.yaml"
    if over.is_file():
        loaded = yaml.load(over.read_text(), Loader=_Loader)
        overrides = [str(o) for o in loaded] if isinstance(loaded, list) else []
    metrics, note = read_jsonl(path / "metrics.jsonl")
    notes += [note] if note else []
    evals, note = read_jsonl(path / "fid.jsonl")
    notes += [note] if note else []
    iters = config.get("train", {}).get("iters") if isinstance(config.get("train"), dict) else 0
    status, note = read_status(path, metrics, iters if isinstance(iters, int) else 0)
    notes += [note] if note else []
    if not metrics and status["status"] != "not started":
        notes.append("no metrics.jsonl rows yet")
    if not (path / "fid.jsonl").is_file():
        every = config.get("train", {}).get("fid_every") if isinstance(
            config.get("train"), dict) else None
        notes.append("no fid.jsonl yet" if every else "no fid.jsonl (train.fid_every=0)")
    grids = read_grids(path)
    if not grids:
        notes.append("no sample grid yet")
    return Run(path=path, config=config, overrides=overrides, status=str(status["status"]),
               reason=_reason(status), iter=int(status.get("iter") or 0),
               iters=int(status.get("iters") or 0), updated=status.get("time"),
               metrics=metrics, evals=evals, grids=grids, notes=notes)


def is_train_run(config_file: Path) -> bool:
    """A `ganqp train` run (not another Hydra app's record, not submitit's copies)."""
    return ".submitit" not in config_file.parts


def find_runs(root: Path) -> list[Run]:
    """Every run directory at or under `root` (one run, a sweep, or a folder of either)."""
    files = sorted(root.glob(".hydra/config.yaml")) + sorted(root.rglob("*/.hydra/config.yaml"))
    runs = []
    for f in files:
        if not is_train_run(f):
            continue
        run = load_run(f.parent.parent)
        if "objective" in run.config and "train" in run.config:
            rel = run.path.relative_to(root).as_posix()
            run.key = run.path.name if rel == "." else rel
            runs.append(run)
    return runs
