"""`ganqp` under torchrun, each rank writing its own exit status to $GANQP_RANK_EXITS/rankN
as it exits: torchrun's agent reports a rank's status only if the rank ended before the
agent's next look, and otherwise stops it with SIGTERM, so its report depends on timing.

    torchrun --standalone --nproc_per_node=2 tests/rank_exit.py train ...

A worker that created a process group leaves through cli.exit_before_finalizing (os._exit,
so no `finally` here would run): the status is written there, on the real exit path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def record(code: object) -> None:
    out = Path(os.environ["GANQP_RANK_EXITS"]) / f"rank{os.environ.get('RANK', '0')}"
    out.write_text(str(code if isinstance(code, int) else (0 if code is None else 1)))


if __name__ == "__main__":
    from ganqp_cli import cli

    leave = cli.exit_before_finalizing

    def recorded_exit(code: int | str | None) -> None:
        record(code)
        leave(code)

    cli.exit_before_finalizing = recorded_exit
    code: object = 0
    try:
        sys.argv = ["ganqp", *sys.argv[1:]]
        cli.main()
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        record(code)
