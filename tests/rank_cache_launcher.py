"""`ganqp` under torchrun with the cache of another node: ranks other than 0 get their own
empty GANQP_CACHE ($GANQP_OTHER_NODE_CACHE/rankN), as processes on a second machine would.

    torchrun --standalone --nproc_per_node=2 tests/rank_cache_launcher.py fid ...
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    rank = int(os.environ.get("RANK", "0"))
    if rank:
        os.environ["GANQP_CACHE"] = os.path.join(os.environ["GANQP_OTHER_NODE_CACHE"],
                                                 f"rank{rank}")
    from ganqp_cli.cli import main
    from ganqp_cli.worker_exit import run_as_worker
    run_as_worker(main, sys.argv[1:])
