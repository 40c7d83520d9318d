"""`validate_arch`: every key of an `arch` node checked before any work (see keyspec)."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from ganqp_cli import checks
from ganqp_cli.keyspec import check_node, flag, target_class


def validate_arch(node: DictConfig | Mapping, res: int | None = None) -> None:
    """Refuse a bad `arch.*` value (a non-positive width or z_dim, an unknown d_norm, ...)
    with the usual one-paragraph message naming the key; with `res`, also a resolution the
    arch has no networks for (its class's RESOLUTIONS; 0 is point data)."""
    check_node(node, "arch", {"sync_bn": flag})  # sync_bn: the loop's (training.setup)
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    cls = target_class(values, "arch")
    supported = getattr(cls, "RESOLUTIONS", None)
    if res is not None and supported is not None and res not in supported:
        name = values.get("name", cls.__name__)
        sides = [str(r) for r in supported if r]
        what = f"images of res {', '.join(sides)}" if sides else "point data (res=0)"
        hint = ("; point data such as data=ring8 need arch=mlp" if res == 0 else
                "; images need arch=gan-qp, dcgan or resnet" if not sides else "")
        raise checks.fail("res", res, f"arch={name} builds networks for {what}{hint}")
    per_res = getattr(cls, "validate_res", None)  # keys that must fit the resolution
    if res and per_res is not None:
        per_res(values, res)
