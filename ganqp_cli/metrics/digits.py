"""The offline digits extractor: a small CNN trained on the bundled digits; its penultimate
layer gives the features and its 10-way head the logits. A domain metric for the digits,
not comparable with Inception FID. The same classifier reads the digits of samples for
`fid.metrics=[acc]` (metrics.classwise) and `[modes]` (metrics.modes): `classifier`,
`read_channels`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.extractor_base import Extractor, cache_dir, file_digest
from ganqp_cli.metrics.resize import clean_resize

DIGITS_VERSION = 1
DIGITS_RES = 16
DIGITS_DIMS = 64


class DigitsNet(nn.Module):
    """A small CNN for 16x16 grayscale digits; `features` is the penultimate layer."""

    def __init__(self, dims: int = DIGITS_DIMS) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(32 * (DIGITS_RES // 4) ** 2, dims), nn.ReLU())
        self.head = nn.Linear(dims, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_input(images: torch.Tensor, resize: str = "legacy") -> torch.Tensor:
    """uint8 images of any size -> the classifier's input: gray, 16x16, in [-1, 1].

    legacy: bilinear with antialiasing (what the classifier was trained through); clean:
    clean-fid's PIL bicubic per channel."""
    same = images.shape[-1] == DIGITS_RES and images.shape[-2] == DIGITS_RES
    if resize == "clean" and not same:
        x = clean_resize(images, DIGITS_RES).to(images.device).div(255)
    else:
        x = images.float().div(255)
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-1] != DIGITS_RES or x.shape[-2] != DIGITS_RES:
        x = F.interpolate(x, size=(DIGITS_RES, DIGITS_RES), mode="bilinear",
                          align_corners=False, antialias=True)
    return x * 2 - 1


def train_digits_classifier(epochs: int = 15, seed: int = 0) -> dict[str, Any]:
    """Train DigitsNet on a fixed 80 % split of sklearn's digits (as ganqp's `digits` data set
    at 32 px, through the extractor's own input path); seeded, single-threaded, on the CPU.
    Returns the state dict and the held-out accuracy."""
    from ganqp_cli.data import Digits
    images = Digits(res=32).tensor
    from sklearn.datasets import load_digits
    labels = torch.from_numpy(load_digits().target.astype(np.int64))
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)  # thread count changes float sums; one thread, one answer
        try:
            torch.manual_seed(seed)
            order = torch.randperm(len(labels))
            n_train = int(0.8 * len(labels))
            tr, te = order[:n_train], order[n_train:]
            x = digits_input(images)
            net = DigitsNet()
            opt = torch.optim.Adam(net.parameters(), lr=2e-3)
            for epoch in range(epochs):
                perm = tr[torch.randperm(n_train)]
                lr = 2e-3 * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
                for group in opt.param_groups:
                    group["lr"] = lr
                for i in range(0, n_train, 64):
                    idx = perm[i:i + 64]
                    xb = x[idx]
                    # one-pixel shifts: robust to the small misalignments generators make
                    dx, dy = torch.randint(-1, 2, (2,)).tolist()
                    xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
                    loss = F.cross_entropy(net(xb), labels[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            net.eval()
            with torch.no_grad():
                acc = (net(x[te]).argmax(1) == labels[te]).float().mean().item()
                # Features scaled to an RMS of 0.5, about Inception pool3's, so that KID's
                # kernel (x.y/d + 1)^3 and FID land in familiar ranges.
                scale = 0.5 / net.features(x[tr]).pow(2).mean().sqrt().item()
        finally:
            torch.set_num_threads(threads)
    return {"version": DIGITS_VERSION, "state": net.state_dict(), "feature_scale": scale,
            "heldout_accuracy": acc,
            "heldout_n": int(len(te)), "train_n": n_train, "epochs": epochs, "seed": seed}


def digits_classifier_file(weights: str | None = None) -> Path:
    """The cached classifier, trained and saved on first use. Call it on one rank (rank 0
    under torchrun, through make_extractor): it holds no collective."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"fid.weights={weights}: no such file. For fid.extractor=digits "
                            "leave fid.weights unset: the classifier trains itself on first use.")
        return path
    path = cache_dir() / f"digits_classifier_v{DIGITS_VERSION}.pt"
    if not path.is_file():
        from ganqp_cli.checkpoint import save_atomic
        blob = train_digits_classifier()
        save_atomic(blob, path)
        print(f"fid: trained the digits classifier (held-out accuracy "
              f"{blob['heldout_accuracy']:.4f} on {blob['heldout_n']} digits), cached at {path}",
              flush=True)
    return path


def _read_classifier(weights: str | None) -> tuple[dict[str, Any], Path, str]:
    path = digits_classifier_file(weights)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        DigitsNet().load_state_dict(blob["state"])
    except Exception as err:  # a stale or damaged cache file: retraining fixes it
        raise UserError(f"cannot load the digits classifier {path} ({err}); delete the "
                        "file and it is trained again on next use.") from None
    return blob, path, file_digest(path)


class DigitsExtractor(Extractor):
    """Penultimate features (scaled) and the 10 logits of the digits classifier."""

    name = "digits"
    n_classes = 10

    def __init__(self, blob: dict[str, Any], path: Path, digest: str,
                 resize: str = "legacy", tf32: bool = False) -> None:
        super().__init__(resize, tf32)
        self.net = DigitsNet()
        self.net.load_state_dict(blob["state"])
        self.dims = self.net.head.in_features
        self.accuracy, self.scale = float(blob["heldout_accuracy"]), float(blob["feature_scale"])
        self.weights_id = f"digits-v{DIGITS_VERSION}-{digest}"
        self.eval().requires_grad_(False)

    @classmethod
    def weights_file(cls, weights: str | None) -> Path:
        """The classifier file (trained and cached here if missing: call it on rank 0)."""
        return digits_classifier_file(weights)

    @classmethod
    def create(cls, dims: int | None, weights: str | None, resize: str, tf32: bool
               ) -> DigitsExtractor:
        """Built on every rank from the classifier rank 0 read (or trained)."""
        from ganqp_cli.metrics.ranks import on_main
        if dims not in (None, DIGITS_DIMS):
            raise UserError(f"fid.dims={dims} is not valid for fid.extractor=digits: its "
                            f"features have {DIGITS_DIMS} dimensions (leave fid.dims=null).")
        blob, path, digest = on_main(lambda: _read_classifier(weights))
        return cls(blob, path, digest, resize, tf32)

    def _run(self, images: torch.Tensor, logits: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.net.features(digits_input(images, self.resize))
        return h * self.scale, (self.net.head(h) if logits else None)


_READER: dict[str, DigitsExtractor] = {}


def classifier(device: torch.device | str) -> DigitsExtractor:
    """The digits classifier that reads samples' digits (trained and cached on first use),
    kept for the last device asked for."""
    key = str(device)
    if key not in _READER:
        with torch.random.fork_rng(devices=[]):  # leave the run's random stream alone
            _READER.clear()
            _READER[key] = DigitsExtractor.create(None, None, "legacy", False).to(device)
    return _READER[key]


def read_channels(images: torch.Tensor, net: DigitsExtractor) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> (N, C) int64: the digit `net` reads in each channel."""
    n, c, h, w = images.shape
    return net.run(images.reshape(n * c, 1, h, w), logits=True)[1].argmax(1).view(n, c)
