"""Declared checks for the keys of a config node that builds a class (objectives, archs,
augmentations), so bad values are refused before any work starts.

A class lists one check per constructor argument in a `KEYS` class attribute (merged along
its base classes); `check_node` checks a node's values against them with the shared
messages of ganqp_cli.checks, and refuses keys the constructor does not take. The checks are
data, so no validation code branches on an objective's or arch's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ganqp_cli import checks
from ganqp_cli.errors import UserError

Check = Callable[[str, Any], Any]


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, allow_none: bool = False) -> Check:
    def check(key: str, value: Any) -> Any:
        return checks.number(key, value, low, high, low_open, high_open, allow_none)
    return check


POSITIVE = number(0, low_open=True)
NON_NEGATIVE = number(0)
REAL = number()


def whole(low: int = 1, allow_none: bool = False) -> Check:
    return lambda key, value: checks.whole(key, value, low, allow_none=allow_none)


def one_of(*options: Any) -> Check:
    return lambda key, value: checks.choice(key, value, options)


def flag(key: str, value: Any) -> Any:
    return checks.boolean(key, value)


def text(key: str, value: Any) -> Any:
    checks.require(isinstance(value, str) and bool(value.strip()), key, value, "a name")
    return value


def optimiser(key: str, value: Any) -> Any:
    checks.require(isinstance(value, Mapping) and "_target_" in value, key, value,
                   "an optimiser node such as {_target_: torch.optim.Adam, lr: 2e-4}")
    return value


def declared_keys(cls: type) -> dict[str, Check]:
    """`KEYS` of `cls` and its bases, the most derived class winning."""
    out: dict[str, Check] = {}
    for c in reversed(cls.__mro__):
        out.update(vars(c).get("KEYS", {}))
    return out


def constructor_keys(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def target_class(node: Mapping, prefix: str) -> type:
    target = node.get("_target_")
    try:
        return get_class(str(target))
    except Exception:  # hydra raises ImportError or ValueError, wrapped variously
        raise UserError(f"{prefix}._target_={target!r} cannot be imported: choose an option of "
                        f"the `{prefix}` group (e.g. {prefix}=NAME) or a class path.") from None


def check_node(node: DictConfig | Mapping, prefix: str,
               loop_keys: Mapping[str, Check] | None = None, cls: type | None = None) -> None:
    """Check every key of `node` (config key `prefix`): the constructor's arguments against
    the KEYS of its class (`cls`, else the node's `_target_`), and `loop_keys` (keys the
    loop reads, not passed to the class)."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    cls = cls or target_class(values, prefix)
    spec = {**(loop_keys or {}), **declared_keys(cls)}
    allowed = set(constructor_keys(cls)) | set(loop_keys or {})
    for key, value in values.items():
        if key == "_target_" or value == "???":  # missing values have their own message
            continue
        if key not in allowed:
            raise UserError(f"{prefix}.{key} is not a key of {prefix}="
                            f"{values.get('name', cls.__name__)}; its keys: "
                            f"{', '.join(sorted(allowed))}.")
        if key not in spec:
            raise RuntimeError(f"{cls.__name__} declares no check for `{key}` (a bug)")
        spec[key](f"{prefix}.{key}", value)
