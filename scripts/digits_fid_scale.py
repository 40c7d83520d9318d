"""Reference points for the offline digits metric (`fid.extractor=digits`): FID and KID of
two random halves of the digits against each other, of uniform noise and of an untrained
generator (the default `ganqp train` networks at initialisation) against all 1,797 digits.

    python scripts/digits_fid_scale.py [--res 32] [--n 1000]        # seconds, CPU

The numbers say what "small" means for this metric; they are not comparable with
Inception FID.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from hydra import compose, initialize_config_module

from ganqp_cli.data import Digits
from ganqp_cli.distributed import Dist
from ganqp_cli.metrics.extractors import make_extractor
from ganqp_cli.metrics.features import Source, dataset_source, extract, generator_source
from ganqp_cli.metrics.frechet import frechet_distance
from ganqp_cli.metrics.kid import kid
from ganqp_cli.metrics.stats import Stats
from ganqp_cli.sampling import latents
from ganqp_cli.training.setup import Setup, seed_all


def images(x: torch.Tensor, what: str) -> Source:
    return Source(x.shape[0], what, item=lambda i: x[i])


def untrained_generator(res: int) -> torch.nn.Module:
    with initialize_config_module("ganqp_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"res={res}", "device=cpu"])
    seed_all(int(cfg.seed))
    return Setup(cfg, Dist(), torch.device("cpu")).ema


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--n", type=int, default=1000, help="noise images and generator samples")
    args = p.parse_args()
    ext = make_extractor("digits", None, None, torch.device("cpu"))
    digits = Digits(res=args.res)
    every = extract(dataset_source(digits, None), ext).features
    half = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    a, b = half[: len(half) // 2].numpy(), half[len(half) // 2:].numpy()
    noise = torch.randint(0, 256, (args.n, *digits.shape),
                          generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    G = untrained_generator(args.res)
    rows = [
        (f"half A ({len(a)}) vs half B ({len(b)})", every[a], every[b]),
        (f"uniform noise ({args.n}) vs all digits",
         extract(images(noise, "noise"), ext).features, every),
        (f"untrained generator ({args.n} samples) vs all digits",
         extract(generator_source(G, latents(args.n, G.z_dim, seed=0), torch.device("cpu"),
                                  "untrained G"), ext).features, every),
    ]
    print(f"digits extractor ({ext.dims}-d, held-out accuracy {ext.accuracy:.4f}), "
          f"digits at {args.res} px")
    for what, x, y in rows:
        x, y = np.asarray(x), np.asarray(y)
        fid = frechet_distance(Stats.of(x), Stats.of(y))
        print(f"  {what:<48} FID {fid:8.4f}  KID {kid(x, y)[0]:.5f}")


if __name__ == "__main__":
    main()
