"""User-facing errors: one paragraph, exit status 2, no traceback."""

from __future__ import annotations

import os
import re
import sys
import textwrap

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(Exception):
    """Bad input from the user (config, paths, files). Printed without a traceback."""


class RunFailed(Exception):
    """A run that cannot go on (diverged, ranks disagree): printed without a traceback, exit
    status 1, status.json "failed" with the reason."""


def user_message(err: BaseException) -> str:
    """The one-paragraph text of a UserError, also when a DataLoader worker re-raised it.

    DataLoader re-raises worker exceptions as ``type(msg)`` where msg embeds the worker's
    traceback; the original message is what follows the last ``UserError:``.
    """
    text = str(err)
    if "Original Traceback" in text:
        found = re.findall(r"UserError: (.*)", text)
        if found:
            text = found[-1]
    return text.strip()


def report_and_exit(err: BaseException, code: int = EXIT_USAGE) -> None:
    msg = textwrap.fill(user_message(err), width=100, break_long_words=False,
                        break_on_hyphens=False)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: said once, every rank exits
        print(f"ganqp: error: {msg}", file=sys.stderr)
    sys.exit(code)
