"""`cond=true` with every objective, architecture and add-on, unchanged: one training
iteration each, in which every call of the generator and of the critic (fakes, penalties,
augmentation, encoders) must read the labels of the real batch of its step, and the trained
networks answer to the class.

The labels a network reads are recorded by a forward pre-hook on each conditional module;
the step's real batch's labels by wrapping the batch stream. GAN-QP's d(x_r, x_f) then
compares images of one class: the fake of row i is made with the label of real row i.
"""

from __future__ import annotations

import importlib.resources

import pytest
import torch
from hydra import compose, initialize_config_module

from ganqp_cli import distributed as dist_
from ganqp_cli.data import Batches
from ganqp_cli.networks.conditional import Conditional, conditioned
from ganqp_cli.training.phases import Guard, iteration, phases
from ganqp_cli.training.setup import Setup, seed_all

OBJECTIVES = sorted(p.name[:-5] for p in
                    (importlib.resources.files("ganqp_cli.conf") / "objective").iterdir()
                    if p.name.endswith(".yaml"))
TINY = ["res=16", "arch.width=0.125", "train.batch_size=8", "device=cpu", "cond=true",
        "arch.z_dim=8"]
R3GAN = ["arch=r3gan", "arch.widths=[128,64,64]", "arch.blocks=1"]  # 16-8-8 channels


class Recording:
    """The batch stream, remembering the labels of the batch it handed out last."""

    def __init__(self, batches: Batches) -> None:
        self.batches, self.drawn = batches, []

    def __next__(self) -> torch.Tensor:
        x = next(self.batches)
        self.labels = self.batches.labels
        self.drawn.append(self.labels.clone())
        return x


def one_iteration(overrides: list[str]) -> tuple[Setup, Recording, list[torch.Tensor]]:
    with initialize_config_module(config_module="ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *overrides])
    seed_all(0)
    s = Setup(cfg, dist_.Dist(), torch.device("cpu"))
    stream = Recording(Batches(s.data, s.local_batch, 0, s.device, workers=0, labels=True))
    seen: list[tuple[int, torch.Tensor]] = []  # (draw it belongs to, labels read)
    for m in s.models.modules():
        if isinstance(m, Conditional):
            m.register_forward_pre_hook(
                lambda mod, args: seen.append((len(stream.drawn), mod.current_labels())))
    logged = iteration(s, phases(s), stream, lambda: torch.randn(s.local_batch, s.z_dim),
                       Guard(1), 0)
    for values, _ in logged:
        assert all(torch.isfinite(v).all() for v in values.values()), values
    assert seen, "no conditional module was called"
    for draw, labels in seen:  # every call read the labels of the step's own real batch
        assert torch.equal(labels, stream.drawn[draw - 1]), draw
    return s, stream, [labels for _, labels in seen]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_trains_conditionally_unchanged(objective):
    s, stream, _ = one_iteration([f"objective={objective}"])
    draws = int(s.cfg.objective.d_steps) + 1
    assert len(stream.drawn) == draws
    z = torch.randn(4, s.z_dim)
    G = s.models.G.eval()
    with torch.no_grad(), conditioned(G, torch.tensor([0, 0, 0, 0])):
        a = G(z)
    with torch.no_grad(), conditioned(G, torch.tensor([7, 7, 7, 7])):
        b = G(z)
    assert not torch.allclose(a, b), "the generator ignores the class"


@pytest.mark.parametrize("extra", [
    ["arch=dcgan"], ["arch=resnet", "objective=hinge-sn"], ["objective.critic=pair"],
    [*R3GAN, "objective=rpgan"], [*R3GAN, "objective=o-gan"], [*R3GAN, "objective.critic=pair"],
    ["reg.r1=1", "reg.r2=1", "reg.lecam=0.1"], ["aug=diffaugment"],
    ["aug=ada", "aug.interval=1"], ["train.amp=bf16", "objective=sgan-sn"],
], ids=lambda e: " ".join(e))
def test_architectures_regularisers_and_augmentation_see_the_labels(extra):
    one_iteration(extra)


def test_the_critic_answers_to_the_class():
    s, _, _ = one_iteration(["objective=wgan-gp"])
    D = s.models.D.eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad(), conditioned(D, torch.tensor([1, 1, 1, 1])):
        a = D(x)
    with torch.no_grad(), conditioned(D, torch.tensor([2, 2, 2, 2])):
        b = D(x)
    assert not torch.allclose(a, b)
    with pytest.raises(RuntimeError, match="class-conditional"):
        D(x)  # outside a conditioned block: no silent unconditional answer
