"""Feature extractors for FID/KID: pytorch-fid's InceptionV3 and the offline digits classifier.

An extractor maps uint8 images (N, C, H, W), any size, 1 or 3 channels, to float32 features
(N, dims). `name`, `dims` and `weights_id` identify it in cached statistics and outputs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganqp_cli.errors import UserError

INCEPTION_DIMS = (64, 192, 768, 2048)


def cache_dir() -> Path:
    """$GANQP_CACHE, else ~/.cache/ganqp: trained digits classifier, reference statistics."""
    return Path(os.environ.get("GANQP_CACHE") or Path.home() / ".cache" / "ganqp").expanduser()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Grayscale -> RGB by repeating the channel, as PIL's convert('RGB') does for 'L'."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


# ---- pytorch-fid's InceptionV3 ------------------------------------------------------------

def fid_inception_structure() -> nn.Module:
    """The FID Inception network of pytorch-fid (TF-ported blocks), with no weights loaded."""
    import torchvision
    from pytorch_fid.inception import (
        FIDInceptionA,
        FIDInceptionC,
        FIDInceptionE_1,
        FIDInceptionE_2,
    )
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                          init_weights=False)
    for name, block in (("Mixed_5b", FIDInceptionA(192, pool_features=32)),
                        ("Mixed_5c", FIDInceptionA(256, pool_features=64)),
                        ("Mixed_5d", FIDInceptionA(288, pool_features=64)),
                        ("Mixed_6b", FIDInceptionC(768, channels_7x7=128)),
                        ("Mixed_6c", FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6d", FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6e", FIDInceptionC(768, channels_7x7=192)),
                        ("Mixed_7b", FIDInceptionE_1(1280)),
                        ("Mixed_7c", FIDInceptionE_2(2048))):
        setattr(net, name, block)
    return net


def hub_weights_file() -> Path:
    """Where pytorch-fid's download (torch.hub) keeps the FID Inception weights."""
    from pytorch_fid.inception import FID_WEIGHTS_URL
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[-1]


def _missing_weights(reason: str) -> UserError:
    from pytorch_fid.inception import FID_WEIGHTS_URL
    return UserError(
        f"the FID Inception weights are not available ({reason}). Download "
        f"{FID_WEIGHTS_URL} on a machine with internet and either put it at "
        f"{hub_weights_file()} (the torch hub cache pytorch-fid uses; TORCH_HOME moves it) or "
        "pass fid.weights=PATH/TO/pt_inception-2015-12-05-6726825d.pth.")


def load_inception_weights(weights: str | None) -> tuple[dict[str, torch.Tensor], Path]:
    """State dict of the FID Inception: from `fid.weights`, else pytorch-fid's hub cache
    (downloaded there on first use, exactly as pytorch-fid does)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"fid.weights={weights}: no such file. Pass the FID Inception "
                            "weights (pt_inception-2015-12-05-6726825d.pth), or leave "
                            "fid.weights unset to use the torch hub cache.")
    else:
        path = hub_weights_file()
        if not path.is_file():
            from pytorch_fid import inception as pf
            try:
                pf.load_state_dict_from_url(pf.FID_WEIGHTS_URL, progress=True)
            except OSError as err:  # URLError, HTTPError, socket errors: no internet
                raise _missing_weights(f"not in the torch hub cache, and downloading "
                                       f"failed: {err}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever makes the file unreadable, the remedy is the same
        raise UserError(f"fid.weights: cannot read {path} as a torch state dict ({err}); "
                        "re-download it.") from None
    return state, path


def random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Seeded random weights with the FID Inception's structure, saved at `path`: stands in
    for the real file in offline tests and benchmarks (same keys, shapes and cost)."""
    g = torch.Generator().manual_seed(seed)
    state = fid_inception_structure().state_dict()
    for key, t in state.items():
        if key.endswith("conv.weight"):  # He init keeps activations O(1) through the depth
            fan_in = t[0].numel()
            t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        elif key.endswith("bn.weight") or key.endswith("bn.running_var"):
            t.copy_(0.5 + torch.rand(t.shape, generator=g))
        elif key.endswith("bn.bias") or key.endswith("bn.running_mean"):
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
        elif t.is_floating_point():
            t.copy_(0.01 * torch.randn(t.shape, generator=g))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


class InceptionExtractor(nn.Module):
    """pytorch-fid's InceptionV3 features: the same resize (bilinear to 299), scaling and
    blocks, run only up to the block `dims` needs; faster through channels_last and
    inference mode, with the same arithmetic."""

    name = "inception"

    def __init__(self, dims: int = 2048, weights: str | None = None) -> None:
        super().__init__()
        if dims not in INCEPTION_DIMS:
            raise UserError(f"fid.dims={dims} is not valid for the Inception extractor: one of "
                            f"{', '.join(map(str, INCEPTION_DIMS))} (2048: pool3, the standard).")
        state, path = load_inception_weights(weights)
        net = fid_inception_structure()
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise UserError(f"{path} does not hold FID Inception weights "
                            f"({str(err).splitlines()[0]}); use "
                            "pt_inception-2015-12-05-6726825d.pth.") from None
        self.dims, self.weights_path = dims, path
        self.weights_id = f"{path.stem}-{file_digest(path)}"
        blocks = [[net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3,
                   nn.MaxPool2d(kernel_size=3, stride=2)],
                  [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
                  [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b,
                   net.Mixed_6c, net.Mixed_6d, net.Mixed_6e],
                  [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c]]
        self.body = nn.Sequential(*[m for b in blocks[:INCEPTION_DIMS.index(dims) + 1] for m in b])
        self.eval().requires_grad_(False)
        self.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_rgb(images).float().div(255)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (2 * x - 1).contiguous(memory_format=torch.channels_last)
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False  # full float32, whatever training chose
        try:
            return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)
        finally:
            torch.backends.cudnn.allow_tf32 = tf32


# ---- the digits classifier -----------------------------------------------------------------

DIGITS_VERSION = 1
DIGITS_RES = 16


class DigitsNet(nn.Module):
    """A small CNN for 16x16 grayscale digits; `features` is the penultimate layer."""

    def __init__(self, dims: int = 64) -> None:
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


def digits_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images of any size -> the classifier's input: gray, 16x16, in [-1, 1]."""
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
    """The cached classifier, trained and saved on first use (rank 0 under torchrun)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"fid.weights={weights}: no such file. For fid.extractor=digits "
                            "leave fid.weights unset: the classifier trains itself on first use.")
        return path
    path = cache_dir() / f"digits_classifier_v{DIGITS_VERSION}.pt"
    from ganqp_cli import distributed as D
    if D.broadcast_object(path.is_file()):  # every rank takes the same branch
        return path
    if D.current().is_main:
        from ganqp_cli.checkpoint import save_atomic
        blob = train_digits_classifier()
        save_atomic(blob, path)
        print(f"fid: trained the digits classifier (held-out accuracy "
              f"{blob['heldout_accuracy']:.4f} on {blob['heldout_n']} digits), cached at {path}",
              flush=True)
    D.barrier()
    return path


class DigitsExtractor(nn.Module):
    """Penultimate features of a small digits classifier: an offline, domain-specific FID
    for the bundled digits, not comparable with Inception FID."""

    name = "digits"

    def __init__(self, dims: int | None = None, weights: str | None = None) -> None:
        super().__init__()
        path = digits_classifier_file(weights)
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            self.net = DigitsNet()
            self.net.load_state_dict(blob["state"])
        except Exception as err:  # a stale or damaged cache file: retraining fixes it
            raise UserError(f"cannot load the digits classifier {path} ({err}); delete the "
                            "file and it is trained again on next use.") from None
        self.dims = self.net.head.in_features
        if dims not in (None, self.dims):
            raise UserError(f"fid.dims={dims} is not valid for fid.extractor=digits: its "
                            f"features have {self.dims} dimensions (leave fid.dims=null).")
        self.accuracy, self.scale = float(blob["heldout_accuracy"]), float(blob["feature_scale"])
        self.weights_path, self.weights_id = path, f"digits-v{DIGITS_VERSION}-{file_digest(path)}"
        self.eval().requires_grad_(False)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(digits_input(images)) * self.scale


EXTRACTORS = {"inception": InceptionExtractor, "digits": DigitsExtractor}
_BUILT: dict[tuple, nn.Module] = {}


def make_extractor(kind: str, dims: int | None, weights: str | None,
                   device: torch.device) -> nn.Module:
    """The extractor, reused while its weights file is unchanged: multirun sweeps
    (`ganqp fid -m ckpt=a,b`) run every job in one process."""
    if kind not in EXTRACTORS:
        raise UserError(f"fid.extractor={kind!r} is not valid: inception (pytorch-fid's "
                        "InceptionV3, the standard FID) or digits (offline, for the bundled "
                        "digits only).")
    if kind == "inception" and dims is None:
        dims = 2048
    if kind == "digits":  # collective under torchrun: trained once, on rank 0
        file = digits_classifier_file(weights)
    else:
        file = Path(weights).expanduser() if weights else hub_weights_file()
    key = (kind, dims, str(file), file.stat().st_mtime_ns if file.is_file() else None,
           str(device))
    if key not in _BUILT:
        _BUILT.clear()
        _BUILT[key] = EXTRACTORS[kind](dims=dims, weights=weights).to(device)
    return _BUILT[key]
