"""`ganqp` under torchrun, each rank writing its own exit status to $GANQP_RANK_EXITS/rankN
as it exits: torchrun's agent reports a rank's status only if the rank ended before the
agent's next look, and otherwise stops it with SIGTERM, so its report depends on timing.

    torchrun --standalone --nproc_per_node=2 tests/rank_exit.py train ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    from ganqp_cli.cli import main
    code: object = 0
    try:
        sys.argv = ["ganqp", *sys.argv[1:]]
        main()
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        out = Path(os.environ["GANQP_RANK_EXITS"]) / f"rank{os.environ.get('RANK', '0')}"
        out.write_text(str(code if isinstance(code, int) else 1))
