"""Class-conditional runs (`cond=true`): which classes a run has, how labels are drawn where
no data set supplies them (sample grids, `ganqp sample`, FID), and the checks around them.

The networks' side is ganqp_cli.networks.conditional; the data's is the `classes`/`labels()`
part of the DataSet protocol (ganqp_cli.data.base).
"""

from __future__ import annotations

from typing import Any

import torch

from ganqp_cli.errors import UserError

# A class grid shows at most this many classes, one per row (`classes=[...]` picks others).
MAX_GRID_CLASSES = 16


def run_classes(cond: Any, data: Any) -> list[str] | None:
    """The class names of a run: those of its data with `cond=true`, None without. A data
    set without labels is refused with what it lacks."""
    if not cond:
        return None
    classes = getattr(data, "classes", None)
    if classes is None:
        why = getattr(data, "unlabelled", "it has no classes")
        raise UserError(f"cond=true trains a class-conditional model, but data={data.name} "
                        f"has no labels: {why}. Use a data set with classes (digits, mnist, "
                        "cifar10, ring8, a folder with one subfolder per class or a "
                        "StyleGAN2-ADA dataset.json, or a set prepared from one), or "
                        "cond=false.")
    return [str(c) for c in classes]


def class_counts(data: Any, n_classes: int) -> list[int]:
    """Items per class (what FID draws classes by)."""
    return torch.bincount(data.labels(), minlength=n_classes).tolist()


def check_resume(state: dict[str, Any], classes: list[str] | None, path: str) -> None:
    """A resumed run has the checkpoint's classes (or, like it, none)."""
    saved = state.get("classes")
    if saved != classes:
        def said(c: list[str] | None) -> str:
            return "cond=false" if c is None else f"cond=true with {len(c)} classes " \
                f"({', '.join(c[:5])}{', ...' if len(c) > 5 else ''})"
        raise UserError(f"cannot resume from {path}: it was trained with {said(saved)}, this "
                        f"run has {said(classes)}. Resume with the checkpoint's cond and "
                        "data, or start a new run directory.")


def draw_labels(n: int, counts: list[int] | None, n_classes: int, seed: int) -> torch.Tensor:
    """n labels drawn with the data's class frequencies (`counts`; uniform when None), on
    the CPU from a generator seeded with `seed`: the same labels everywhere."""
    weights = torch.tensor(counts if counts else [1] * n_classes, dtype=torch.float64)
    g = torch.Generator().manual_seed(int(seed) + 7_000_003)  # not the seed of z
    return torch.multinomial(weights, n, replacement=True, generator=g)


def class_index(classes: list[str], value: Any, key: str) -> int:
    """`class=7` (an index) or `class=cat` (a name) -> the label."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(classes):
            return value
    elif str(value) in classes:
        return classes.index(str(value))
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise UserError(f"{key}={value!r} is not a class of this model: give an index from 0 to "
                    f"{len(classes) - 1} or a class name ({shown}).")


def grid_rows(classes: list[str], chosen: Any = None, key: str = "classes") -> list[int]:
    """The labels of a class grid's rows: `chosen` (a list of indices or names), else the
    first MAX_GRID_CLASSES classes."""
    if chosen is None:
        return list(range(min(len(classes), MAX_GRID_CLASSES)))
    items = [chosen] if isinstance(chosen, int | str) else list(chosen)
    if not items:
        raise UserError(f"{key}=[] names no class; give class indices or names, e.g. "
                        f"{key}=[0,3].")
    return [class_index(classes, v, key) for v in items]


def grid_labels(rows: list[int], n: int) -> tuple[torch.Tensor, int]:
    """(labels, columns) of a grid of at most n images with one row per label of `rows`:
    row r holds class rows[r] in every column."""
    cols = max(1, n // len(rows))
    return torch.tensor(rows, dtype=torch.int64).repeat_interleave(cols), cols


def class_grid(z: torch.Tensor, classes: list[str] | None, rows: list[int] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """(z, labels, images per row) of a grid from the codes `z`: unconditional, z as it is
    (no labels, the default layout); with classes, one row per class of `rows` (default the
    first MAX_GRID_CLASSES) whose columns are the first len(z) // rows codes, the same code
    in every row."""
    if classes is None:
        return z, None, None
    rows = grid_rows(classes) if rows is None else rows
    labels, cols = grid_labels(rows, z.shape[0])
    return z[:cols].repeat(len(rows), 1), labels.to(z.device), cols
