"""The non-finite guard, decided on the device.

An update whose loss or gradients hold a NaN or inf is skipped: parameters, optimiser state
and the buffers its forward pass moved (BatchNorm statistics and counts, spectral-norm
vectors) are left as they were, on every rank alike (the finiteness flag travels with the
averaged gradients). On a GPU, reading the flag on the host would stop the host from queueing
kernels until the device caught up, once per update, so the flag stays a device tensor and
the skip happens on the device:

- an optimiser that takes a `found_inf` tensor (torch's fused Adam, AdamW, SGD, Adagrad: the
  path GradScaler uses) is given the flag and skips by itself;
- any other optimiser steps, and its parameters and state are then put back from a copy
  where the flag says so (`Snapshot.restore_unless`), which costs a copy of both per update;
- the buffers are copied before the forward pass and put back likewise.

The host reads the flag instead where that waits for nothing (`HOST_READ_IS_FREE`: the CPU,
whose kernels have finished when Python goes on, and where the copy would cost 5% of an
update), and where it cannot be avoided: an optimiser's first step (it makes the state, and
a skipped first step must leave none) and an optimiser whose state lives on another device
than its parameters (torch's Adam keeps its step counters on the host unless fused=True or
capturable=True).

`Guard` counts skipped updates on the device too; `check` reads the counts (one host read)
and raises RunFailed once a phase skipped `patience` updates in a row. The loop calls it at
log steps and before every checkpoint, so a diverged run stops at the first log step (or
checkpoint) after the update that reached the patience, and no checkpoint is written after it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ganqp_cli.errors import RunFailed

# Device types where the guard may read its flag on the host at no cost. Tests empty it to
# run the device paths on the CPU.
HOST_READ_IS_FREE = {"cpu"}
# Integer types with the size of each element type: a select on their bit patterns is
# exact, and a NaN in the discarded side cannot leak into the result (NaN * 0 would).
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
NEVER = 2**62


class Snapshot:
    """Copies of a list of tensors, taken with one foreach copy (the copies are allocated
    once and reused while the list stays the same)."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.copies: list[torch.Tensor] = []

    @torch.no_grad()
    def take(self, tensors: list[torch.Tensor]) -> None:
        if [id(t) for t in tensors] != [id(t) for t in self.tensors]:
            self.tensors, self.copies = list(tensors), [t.detach().clone() for t in tensors]
        elif tensors:
            torch._foreach_copy_(self.copies, tensors)

    @torch.no_grad()
    def restore(self) -> None:
        if self.tensors:
            torch._foreach_copy_(self.tensors, self.copies)

    def put_back_unless(self, keep: bool | torch.Tensor) -> None:
        """Restore the copies unless `keep` (on_host's answer)."""
        if isinstance(keep, torch.Tensor):
            self.restore_unless(keep)
        elif not keep:
            self.restore()

    @torch.no_grad()
    def restore_unless(self, keep: torch.Tensor) -> None:
        """Each tensor = itself where `keep` (a bool device scalar) is true, else its copy,
        bit for bit and without a host read: keep * new + (1 - keep) * old on the bit
        patterns, in three foreach operations per element size."""
        groups: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for t, c in zip(self.tensors, self.copies, strict=True):
            size = t.element_size()
            new, old = groups.setdefault(size, ([], []))
            new.append(t.detach().view(_BITS[size]))
            old.append(c.view(_BITS[size]))
        for size, (new, old) in groups.items():
            torch._foreach_mul_(new, keep.to(_BITS[size]))
            torch._foreach_mul_(old, (~keep).to(_BITS[size]))
            torch._foreach_add_(new, old)


def takes_found_inf(opt: torch.optim.Optimizer) -> bool:
    """Whether `opt.step()` skips by itself given `opt.found_inf` (torch's fused optimisers,
    as GradScaler drives them)."""
    return bool(getattr(opt, "_step_supports_amp_scaling", False))


def _state_tensors(opt: torch.optim.Optimizer, params: list[nn.Parameter]
                   ) -> list[torch.Tensor] | None:
    """The parameters and their optimiser state, or None where a device-side restore cannot
    cover them: state on another device."""
    state = [v for p in params for v in opt.state.get(p, {}).values()
             if isinstance(v, torch.Tensor)]
    if any(v.device != p.device for v in state for p in params[:1]):
        return None
    return [*params, *state]


def on_host(ok: torch.Tensor) -> bool | torch.Tensor:
    """The flag as the guard uses it: a Python bool where reading it is free, else the
    device tensor itself."""
    return bool(ok) if ok.device.type in HOST_READ_IS_FREE else ok


class Stepper:
    """Applies one phase's optimiser step, or skips it, as the flag says."""

    def __init__(self, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        self.opt, self.params = opt, [p for p in params]
        self.saved = Snapshot()  # parameters and optimiser state (the restore path)
        # Whether the optimiser has stepped: its first step makes its state, and a skipped
        # first step must leave none, which only the host can decide.
        self.stepped = False

    def step(self, keep: bool | torch.Tensor, after: Callable[[], None]) -> None:
        """Step if `keep` (on_host's answer) is true. `after` runs after the step (WGAN's
        clipping); on a skip by `found_inf` it runs on the unchanged parameters, so it must
        leave parameters that already satisfy it as they are (clipping does)."""
        opt = self.opt
        if isinstance(keep, torch.Tensor) and takes_found_inf(opt):
            opt.grad_scale, opt.found_inf = None, (~keep).float()  # unscaled already
            try:
                opt.step()
            finally:
                del opt.grad_scale, opt.found_inf
            after()
            self.stepped = True  # (its state, made now, is as new if the step was skipped)
            return
        self.stepped = self.stepped or (bool(self.params)
                                        and all(p in opt.state for p in self.params))
        tensors = _state_tensors(opt, self.params) if self.stepped else None
        if isinstance(keep, torch.Tensor) and tensors is not None:
            self.saved.take(tensors)
            opt.step()
            after()
            self.saved.restore_unless(keep)
            return
        if bool(keep):  # the host decides (free here, or unavoidable: see the module)
            opt.step()
            after()
            self.stepped = True


class Guard:
    """Counts skipped updates per phase on the device: how many in a row, how many in all,
    and the iteration where `patience` in a row was first reached. `check` reads them."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.base = 0  # skipped before the counts on the device began (a resumed run)
        self.counts: dict[str, torch.Tensor] = {}  # phase -> [in a row, skipped, reached at]

    def record(self, ok: torch.Tensor, phase: str, it: int) -> None:
        """After update of `phase` in iteration `it` (0-based): no host read."""
        c = self.counts.get(phase)
        if c is None:
            c = torch.tensor([0, 0, NEVER], dtype=torch.int64, device=ok.device)
        bad = (~ok).to(torch.int64)
        run = (c[0] + 1) * bad
        reached = torch.where(run == self.patience, it + 1, NEVER)
        self.counts[phase] = torch.stack([run, c[1] + bad, torch.minimum(c[2], reached)])

    def _read(self) -> dict[str, list[int]]:
        if not self.counts:
            return {}
        rows = torch.stack(list(self.counts.values())).tolist()
        return dict(zip(self.counts, rows, strict=True))

    @property
    def skipped(self) -> int:
        """All skipped updates of the run (a host read)."""
        return self.base + sum(row[1] for row in self._read().values())

    @skipped.setter
    def skipped(self, value: int) -> None:
        self.base = int(value)
        for c in self.counts.values():
            c[1] = 0

    def check(self) -> None:
        """Raise RunFailed if a phase has skipped `patience` updates in a row (a host read:
        call it where the loop reads the device anyway, at log steps and checkpoints)."""
        reached = [(row[2], phase) for phase, row in self._read().items() if row[2] < NEVER]
        if not reached:
            return
        it, phase = min(reached)
        raise RunFailed(
            f"training diverged: {self.patience} {phase} updates in a row had a non-finite "
            f"loss or gradient (the last of them in iteration {it}); every one was "
            "skipped, so checkpoints/last.pt holds the last good state. Lower the "
            "learning rates (objective.opt_d.lr, objective.opt_g.lr), try train.amp=off, "
            "or raise train.nan_patience.")
