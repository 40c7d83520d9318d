"""LSUN as shipped: an LMDB directory (data.mdb) whose values are encoded images (webp/jpeg).

The database is opened lazily in each process that reads (readonly, no lock file), because
an LMDB environment must not cross a fork into DataLoader workers.
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


def open_env(root: str) -> Any:
    lmdb = require_lmdb(root)
    try:  # lock=False: a read-only reader on shared storage needs (and may not write) no lock
        return lmdb.open(str(Path(root).expanduser()), readonly=True, lock=False,
                         readahead=False, meminit=False, max_readers=512)
    except lmdb.Error as err:
        raise UserError(f"data.root={root}: cannot open the LMDB database ({err}).") from None


class LmdbImages(ImageData):
    """Every value of an LMDB database as an image, in key order (LMDB's sorted order)."""

    def __init__(self, root: str, res: int, name: str = "lsun", channels: int = 3,
                 hflip: bool = False, holdout: float = 0.0, split: str = "train",
                 on_error: str = "error") -> None:
        super().__init__(res, hflip, on_error)
        self.name, self.channels, self.root = name, channels, str(root)
        env = open_env(root)
        with env.begin() as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        env.close()
        if not keys:
            raise UserError(f"data.root={root}: the LMDB database holds no entries.")
        keep = split_indices(len(keys), holdout, split).numpy()
        keys = [keys[i] for i in keep]
        # All keys in one bytes blob plus offsets: compact (LSUN bedroom has 3 million) and
        # shared copy-on-write by DataLoader workers.
        self._blob = b"".join(keys)
        self._ends = np.cumsum([len(k) for k in keys])
        self._env, self._pid = None, -1

    def __len__(self) -> int:
        return len(self._ends)

    def key(self, index: int) -> bytes:
        start = int(self._ends[index - 1]) if index else 0
        return self._blob[start:int(self._ends[index])]

    def describe(self, index: int) -> str:
        return f"{self.root} key {self.key(index).decode(errors='backslashreplace')}"

    def _txn_get(self, key: bytes) -> bytes | None:
        if self._env is None or self._pid != os.getpid():
            if self._env is not None:
                # Inherited through fork: lmdb refuses a second open of the same files in
                # one process while this one is registered. Closing the child's copy of a
                # read-only, lock-free environment only unmaps it here.
                self._env.close()
            self._env, self._pid = open_env(self.root), os.getpid()
        with self._env.begin(buffers=False) as txn:
            return txn.get(key)

    def read(self, index: int) -> torch.Tensor:
        value = self._txn_get(self.key(index))
        if value is None:
            raise Unreadable(self.describe(index), "the key has no value")
        return decode_bytes(value, self.describe(index), self.res, self.channels)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_env"], state["_pid"] = None, -1
        return state
