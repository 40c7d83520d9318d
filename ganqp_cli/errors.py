"""User-facing errors: one paragraph, exit status 2, no traceback."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from typing import Any

EXIT_USAGE = 2
EXIT_FAILED = 1
_ABSENT = object()


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


class HeldStream:
    """A stream that holds back what is written to it until `release()`, then passes
    everything through (handlers bound to it meanwhile keep working)."""

    def __init__(self, real: Any) -> None:
        self.real, self.parts, self.holding = real, [], True

    def write(self, text: str) -> int:
        if self.holding:
            self.parts.append(text)
        else:
            self.real.write(text)
        return len(text)

    def flush(self) -> None:
        if not self.holding:
            self.real.flush()

    def take(self) -> str:
        """What was held, no longer held."""
        text, self.parts = "".join(self.parts), []
        return text

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self.real.write(self.take())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def hydra_refusal(text: str, command: str) -> str:
    """Hydra's report of a command line it refused, as one paragraph: its hint about
    HYDRA_FULL_ERROR and any traceback dropped (the last line says what was wrong)."""
    found = re.search(r"Could not override '([^']+)'", text)
    if found and "not in struct" in text:
        key = found.group(1)
        holders = options_holding(key)
        if holders:
            return (f"{key} is not a key of `ganqp {command}` with the config groups chosen: "
                    f"it belongs to {', '.join(holders)}. Choose one of those on the command "
                    f"line ({holders[0]} {key}=VALUE), or `ganqp {command} --cfg job` lists "
                    "the keys there are.")
        return (f"{key} is not a key of `ganqp {command}` (a typo?). `ganqp {command} --cfg "
                f"job` lists every key; +{key}=VALUE adds a new one.")
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        lines = lines[-1:]
    said = " ".join(lines) or f"the command line of `ganqp {command}` was refused."
    bad = unparsable_override(sys.argv[1:]) if "override_grammar" in text else None
    if bad:
        return (f"{bad} cannot be read as key=value ({said}). Quote a value holding "
                "brackets, commas or spaces for Hydra, e.g. 'key=\"a,b\"'.")
    return said


def options_holding(key: str) -> list[str]:
    """The options of the config group named by `key`'s first part whose YAML has the rest
    of it: `data.channels` -> ["data=folder"], a key of another data set than the one chosen."""
    import importlib.resources

    from omegaconf import DictConfig, OmegaConf
    group, _, rest = key.lstrip("+~").partition(".")
    folder = importlib.resources.files("ganqp_cli.conf").joinpath(group)
    if not rest or group in ("experiment", "hydra") or not folder.is_dir():
        return []
    found = []
    for yaml in sorted(folder.iterdir(), key=lambda f: f.name):
        if not yaml.name.endswith(".yaml"):
            continue
        node: Any = OmegaConf.create(yaml.read_text())
        for part in rest.split("."):  # present even where the YAML's value is null
            node = node[part] if isinstance(node, DictConfig) and part in node else _ABSENT
        if node is not _ABSENT:
            found.append(f"{group}={yaml.name[:-5]}")
    return found


def unparsable_override(args: list[str]) -> str | None:
    """The first command-line override Hydra's grammar cannot parse (it does not say which)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            return arg
    return None
