"""Parameter counts of `arch=resnet` at each resolution (3-channel images, width 1, ch 64)
beside those of the published SNGAN networks.

The reference counts are those of the SNGAN networks as reproduced in kwotsin/mimicry
(torch_mimicry.nets.sngan, SNGANGenerator32/64/128 and SNGANDiscriminator32/64/128),
counted with `sum(p.numel() for p in net.parameters())`; SNGAN's CIFAR-10 pair is the
"4.3M / 1.0M" usually quoted. 256 and 512 px use BigGAN's channel tables, for which no
unconditional reference network exists.

    python scripts/resnet_params.py [--width 1.0] [--channels 3]
"""

from __future__ import annotations

import argparse

from ganqp_cli.networks import ResNetArch
from ganqp_cli.networks.resnet import TABLES

REFERENCE = {32: (4_276_739, 1_053_825), 64: (12_220_675, 10_141_441),
             128: (32_150_787, 29_017_857)}


def counts(res: int, width: float = 1.0, channels: int = 3) -> tuple[int, int]:
    arch = ResNetArch(width=width)
    shape = (channels, res, res)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return n(arch.generator(shape)), n(arch.critic(shape))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--channels", type=int, default=3)
    args = p.parse_args()
    print(f"arch=resnet, width {args.width}, {args.channels} channels")
    print(f"{'res':>5} {'G':>12} {'D':>12}   {'SNGAN G':>12} {'SNGAN D':>12}")
    for res in TABLES:
        g, d = counts(res, args.width, args.channels)
        ref = REFERENCE.get(res) if args.width == 1.0 and args.channels == 3 else None
        rg, rd = (f"{ref[0]:,}", f"{ref[1]:,}") if ref else ("-", "-")
        print(f"{res:>5} {g:>12,} {d:>12,}   {rg:>12} {rd:>12}")


if __name__ == "__main__":
    main()
