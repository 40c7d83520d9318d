"""`train.compile` and `train.channels_last`: the GPU settings of a run's networks.

torch.compile replaces each network's `forward` on the instance (bound to that instance, so
a deep copy calls its own parameters), never the module itself: the state dict keeps its
keys (no `_orig_mod.` prefix), so checkpoints load into uncompiled networks, and the hooks
an augmentation puts on the critic stay outside the compiled code (ADA's probability
changes every few iterations and would force a recompilation each time).

The critic is left uncompiled when a loss differentiates it twice (a gradient penalty:
WGAN-GP, WGAN-div, reg.r1, reg.r2), since torch.compile's backward cannot itself be
differentiated; the generator's output enters those penalties detached, so it is compiled.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from ganqp_cli.networks import image_modules

# "inductor" generates code (C++ with gcc on the CPU, Triton on CUDA); tests that only need
# the same tracing (Dynamo, AOTAutograd) pick "aot_eager", which generates none.
BACKEND = "inductor"
MODES = ("auto", "true", "false")


def setting(value: Any) -> str:
    """A key's value as one of MODES (YAML gives booleans for true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def wanted(value: Any, device: torch.device) -> bool:
    """auto: on CUDA only (on the CPU, compiling costs minutes of gcc for small networks)."""
    mode = setting(value)
    return mode == "true" or (mode == "auto" and device.type == "cuda")


def compile_wanted(value: Any) -> bool:
    """train.compile: only when asked for (`true`). `auto` compiles nowhere: on an H200
    (torch 2.11, CUDA 13) the compiled loop's first backward raised "element 0 of tensors
    does not require grad" in fp32 and bf16 alike (scripts/gpu_check.py, 2026-12-04): the
    reused frozen graph that guard_trainability now prevents (found on the CPU with torch
    2.11). Until the GPU check's compile rows pass on a GPU, a default run stays uncompiled."""
    return setting(value) == "true"


def memory_format(value: Any, device: torch.device, shape: tuple[int, ...]
                  ) -> torch.memory_format | None:
    """channels_last for image networks when wanted (auto: on CUDA, where cuDNN's
    convolutions and Tensor Cores prefer it), else None (the default layout)."""
    return torch.channels_last if wanted(value, device) and len(shape) == 3 else None


def why_not_critic(objective: Any, reg: Any, sync_bn: bool, world: int) -> str | None:
    """Why the critic must stay uncompiled, or None."""
    if getattr(objective, "differentiates_critic_twice", False):
        return (f"objective {objective.name}'s gradient penalty differentiates the critic "
                "twice (double backward), which torch.compile does not support")
    if getattr(reg, "r1", 0) > 0 or getattr(reg, "r2", 0) > 0:
        return ("reg.r1/reg.r2 differentiate the critic twice (double backward), which "
                "torch.compile does not support")
    if sync_bn and world > 1:
        return "arch.sync_bn's cross-process BatchNorm is not traced by torch.compile here"
    return None


def guard_trainability() -> None:
    """Make Dynamo check every parameter's requires_grad on each call. The loop freezes one
    network while the other trains (phases.set_trainable), so each compiled forward meets
    both states; Dynamo by default skips the tensor guards under a module whose attribute
    dict is unchanged, and requires_grad_ changes no dict. torch 2.11 then reused the
    frozen generator's graph in the generator phase: outputs without a grad_fn, and "element
    0 of tensors does not require grad" at the first backward (the H200's GPU check, and
    the CPU with torch 2.11; torch 2.14 happens to recompile). The guards cost microseconds
    per call."""
    config = torch._dynamo.config
    if hasattr(config, "skip_tensor_guards_with_matching_dict_tags"):
        config.skip_tensor_guards_with_matching_dict_tags = False


def compile_forward(module: nn.Module) -> None:
    """Compile `module.forward` in place (see the module's docstring)."""
    guard_trainability()
    fn = torch.compile(type(module).forward, backend=BACKEND)
    module.forward = types.MethodType(fn, module)  # type: ignore[method-assign]


def compile_networks(generators: list[nn.Module], critics: list[nn.Module],
                     why_not: str | None) -> str:
    """Compile the generator side's networks, and the critic side's image networks unless
    `why_not`; returns the line for the run's log."""
    for m in generators:
        compile_forward(m)
    if why_not is not None:
        return (f"train.compile: the critic runs uncompiled: {why_not}; the generator is "
                "compiled")
    for critic in critics:
        for m in image_modules(critic):
            compile_forward(m)
    return "train.compile: the generator and the critic are compiled (torch.compile)"
