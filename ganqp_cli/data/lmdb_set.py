"""LSUN as shipped: an LMDB directory (data.mdb) whose values are encoded images (webp/jpeg).

The database is opened lazily, once in each process that reads (readonly, no lock file),
because an LMDB environment must not cross a fork into DataLoader workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganqp_cli.data.base import ImageData, split_indices
from ganqp_cli.data.images import Unreadable, decode_bytes
from ganqp_cli.errors import UserError


def require_lmdb(root: str) -> Any:
    try:
        import lmdb
    except ImportError:
        raise UserError(f"data.root={root} is an LMDB database (it holds data.mdb), as LSUN "
                        "ships; reading it needs the lmdb package: pip install 'ganqp[lsun]' "
                        "(or pip install lmdb).") from None
    return lmdb


# One environment per database per process. lmdb refuses a second open of the same files in
# one process while the first is registered, so two readers of one database (a training run
# and a `ganqp prepare` in one interpreter, or an evaluation beside training) must share it,
# and an environment inherited through fork must be closed before the child opens its own.
_ENVS: dict[str, tuple[int, Any]] = {}


def open_env(root: str) -> Any:
    """This process's read-only environment of the database at `root` (opened once)."""
    lmdb = require_lmdb(root)
    path = os.path.realpath(Path(root).expanduser())
    pid, env = _ENVS.get(path, (-1, None))
    if env is not None and pid == os.getpid():
        return env
    if env is not None:  # the parent's copy: closing it in the child only unmaps it here
        env.close()
    try:  # lock=False: a read-only reader on shared storage needs (and may not write) no lock
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                        max_readers=512)
    except lmdb.Error as err:
        _ENVS.pop(path, None)
        raise UserError(f"data.root={root}: cannot open the LMDB database ({err}).") from None
    _ENVS[path] = (os.getpid(), env)
    return env


class LmdbImages(ImageData):
    """Every value of an LMDB database as an image, in key order (LMDB's sorted order)."""

    def __init__(self, root: str, res: int, name: str = "lsun", channels: int = 3,
                 hflip: bool = False, holdout: float = 0.0, split: str = "train",
                 on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        self.name, self.channels, self.root = name, channels, str(root)
        with open_env(root).begin() as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        if not keys:
            raise UserError(f"data.root={root}: the LMDB database holds no entries.")
        keep = split_indices(len(keys), holdout, split).numpy()
        keys = [keys[i] for i in keep]
        # All keys in one bytes blob plus offsets: compact (LSUN bedroom has 3 million) and
        # shared copy-on-write by DataLoader workers.
        self._blob = b"".join(keys)
        self._ends = np.cumsum([len(k) for k in keys])

    def __len__(self) -> int:
        return len(self._ends)

    def key(self, index: int) -> bytes:
        start = int(self._ends[index - 1]) if index else 0
        return self._blob[start:int(self._ends[index])]

    def describe(self, index: int) -> str:
        return f"{self.root} key {self.key(index).decode(errors='backslashreplace')}"

    def _txn_get(self, key: bytes) -> bytes | None:
        with open_env(self.root).begin(buffers=False) as txn:
            return txn.get(key)

    def read(self, index: int) -> torch.Tensor:
        value = self._txn_get(self.key(index))
        if value is None:
            raise Unreadable(self.describe(index), "the key has no value")
        return decode_bytes(value, self.describe(index), self.res, self.channels)
