"""Work that one rank does for all: reading caches and weights files that only rank 0 may
have (other nodes of a multi-node run do not share its ~/.cache)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ganqp_cli import distributed as dist_
from ganqp_cli.errors import UserError

T = TypeVar("T")


def on_main(fn: Callable[[], T]) -> T:
    """fn() on rank 0 only, its result broadcast to every rank. A UserError raised there is
    raised on every rank, so that no rank is left waiting in a collective."""
    d = dist_.current()
    if not d.enabled:
        return fn()
    box: tuple[str, object] = ("", None)
    if d.is_main:
        try:
            box = ("ok", fn())
        except UserError as err:
            box = ("error", str(err))
    status, value = dist_.broadcast_object(box)
    if status == "error":
        raise UserError(str(value))
    return value  # type: ignore[return-value]
