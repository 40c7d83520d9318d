"""`fid.metrics=[modes]`: mode coverage on stacked digits, as the Stacked MNIST papers report
it (Metz et al. 2017, VEEGAN, PacGAN, R3GAN), with no reference set.

Each channel (R, G, B) of each generated image is classified by the project's digits
classifier (ganqp_cli.metrics.digits, trained on the bundled digits); the three digits make
the sample's mode, 100 R + 10 G + B, one of 1,000. Reported: `modes`, how many of the 1,000
modes at least one sample falls into; `modes_kl`, KL(p || uniform) = sum_k p_k log(1000 p_k) of
the generated mode distribution p (0 when every mode is equally frequent, log 1000 = 6.91
for a single mode); and `modes_n`, the samples used.

The classifier only fits digits: the metric is refused for a run on other data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.digits import classifier, read_channels

N_MODES = 1000
# Data sets whose items are three digits as R, G, B: the digits classifier fits them.
FITTING_DATA = ("stacked-digits",)


def check_fits(data_name: str | None, key: str) -> None:
    """Refuse `modes` for data the digits classifier cannot read (None: a folder of samples
    given by the user, taken at its word)."""
    if data_name is None or data_name in FITTING_DATA:
        return
    raise UserError(f"{key}: fid.metrics=[modes] classifies each channel of a sample as a "
                    f"digit with the project's digits classifier, which fits "
                    f"data={', '.join(FITTING_DATA)} only; this run's data is {data_name}. "
                    "Leave modes out of fid.metrics, or train on data=stacked-digits.")


def channel_digits(images: torch.Tensor, net: Any) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> (N, 3) int64: the digit the classifier reads in each
    channel."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"fid.metrics=[modes] needs RGB images (3 channels, one digit each); "
                        f"got images of shape {tuple(images.shape[1:])}.")
    return read_channels(images, net)


def probe(device: torch.device | str) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """What extraction runs on every generated batch for this metric: (function, width)."""
    net = classifier(device)
    return (lambda images: channel_digits(images, net).float()), 3


def mode_counts(digits: np.ndarray) -> np.ndarray:
    """(N, 3) channel digits -> how many samples fall into each of the 1,000 modes."""
    modes = (np.asarray(digits).astype(np.int64) * np.array([100, 10, 1])).sum(1)
    return np.bincount(modes, minlength=N_MODES)


def coverage(counts: np.ndarray) -> dict[str, Any]:
    """modes covered, KL(p || uniform) in nats and the sample count, from mode counts."""
    n = int(counts.sum())
    p = counts[counts > 0] / n
    return {"modes": int((counts > 0).sum()),
            "modes_kl": float((p * np.log(p * len(counts))).sum()), "modes_n": n}


def compute(inp: Any) -> dict[str, Any]:
    """The registry's entry point: the channel digits the probe gathered."""
    return coverage(mode_counts(inp.extras["modes"]))


def text(r: dict[str, Any]) -> str:
    return (f"modes {r['modes']} of {N_MODES}  KL(p || uniform) {r['modes_kl']:.4f} "
            f"({r['modes_n']} samples, each channel read by the digits classifier)")
