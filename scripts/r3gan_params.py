"""Parameter counts of `arch=r3gan` in R3GAN's published configurations (3-channel images),
built on the meta device (nothing allocated), beside the count the configuration gives by
arithmetic from the architecture (tests/test_r3gan.py checks that they agree).

The configurations are those of R3GAN's public code (brownvc/R3GAN, train.py presets): the
channels, groups and blocks per stage from 4 px up, z_dim 64, expansion 2; unconditional,
and class-conditional (`cond=true`) as their code trains them: CIFAR-10 with `--cond` (10
classes), ImageNet with its 1,000.

    python scripts/r3gan_params.py
"""

from __future__ import annotations

import torch

from ganqp_cli.networks import ConditionalArch, R3GANArch

# preset -> (res, arch keys as a user types them, (channels, groups) per stage from 4 px)
PRESETS: dict[str, tuple[int, dict, list[tuple[int, int]]]] = {
    "CIFAR-10": (32, {}, [(768, 96)] * 4),
    "FFHQ-64": (64, {}, [(768, 96)] * 4 + [(384, 48)]),
    "FFHQ-256": (256, {}, [(768, 96)] * 4 + [(384, 48), (192, 24), (96, 12)]),
    "ImageNet-32": (32, {"channels": 1536, "cardinality": 96}, [(1536, 96)] * 4),
    "ImageNet-64": (64, {"widths": [1536] * 5, "cardinality": 96}, [(1536, 96)] * 5),
}

# conditional configurations: preset -> classes
CLASSES: dict[str, int] = {"CIFAR-10": 10, "ImageNet-32": 1000, "ImageNet-64": 1000}


def built(res: int, keys: dict, channels: int = 3, n_classes: int = 0) -> tuple[int, int]:
    """(G, D) parameter counts of arch=r3gan with `keys`, built on the meta device;
    `n_classes` > 0: its class-conditional networks."""
    arch = R3GANArch(**keys)
    if n_classes:
        arch = ConditionalArch(arch, n_classes)
    shape = (channels, res, res)
    with torch.device("meta"):
        G, D = arch.generator(shape), arch.critic(shape)
    return sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())


def arithmetic(stages: list[tuple[int, int]], z_dim: int = 64, expansion: int = 2,
               blocks: int = 2, channels: int = 3, n_classes: int = 0) -> tuple[int, int]:
    """(G, D) counts from the architecture's description, layer by layer; with classes, G's
    class embedding (z_dim numbers, which the basis's linear layer also reads) and D's (as
    many as the 4 px stage's channels, which its last linear layer then outputs)."""
    def block(c: int, g: int) -> int:
        h = c * expansion  # 1x1 in, grouped 3x3, 1x1 out, two bias vectors of the activations
        return c * h + h * (h // g) * 9 + h * c + 2 * h

    body = sum(blocks * block(c, g) for c, g in stages)
    cs = [c for c, _ in stages]
    transitions = sum(a * b for a, b in zip(cs[:-1], cs[1:], strict=True) if a != b)
    g = cs[0] * 16 + z_dim * cs[0] + body + transitions + cs[-1] * channels
    d = channels * cs[-1] + body + transitions + cs[0] * 16 + cs[0]
    if n_classes:
        g += n_classes * z_dim + z_dim * cs[0]
        d += n_classes * cs[0] + cs[0] * cs[0] - cs[0]
    return g, d


def main() -> None:
    print(f"{'configuration':<16} {'res':>4} {'G built':>12} {'D built':>12} "
          f"{'G arithmetic':>13} {'D arithmetic':>13}")
    for name, (res, keys, stages) in PRESETS.items():
        g, d = built(res, keys)
        ga, da = arithmetic(stages)
        print(f"{name:<16} {res:>4} {g:>12,} {d:>12,} {ga:>13,} {da:>13,}")
    for name, n in CLASSES.items():
        res, keys, stages = PRESETS[name]
        g, d = built(res, keys, n_classes=n)
        ga, da = arithmetic(stages, n_classes=n)
        label = f"{name} cond"
        print(f"{label:<16} {res:>4} {g:>12,} {d:>12,} {ga:>13,} {da:>13,}")


if __name__ == "__main__":
    main()
