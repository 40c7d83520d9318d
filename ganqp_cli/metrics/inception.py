"""pytorch-fid's FID InceptionV3: its structure, its weights file, and the extractor.

Features are pytorch-fid's (the same blocks, resize and scaling, run only as far as `dims`
needs); logits are those of the 1008-way fc layer on the pool3 features without the bias,
as the Inception Score takes them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.extractor_base import Extractor, file_digest, to_rgb
from ganqp_cli.metrics.resize import clean_resize, legacy_resize

INCEPTION_DIMS = (64, 192, 768, 2048)
INCEPTION_RES = 299


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


class InceptionExtractor(Extractor):
    """pytorch-fid's InceptionV3 features (faster through channels_last and inference mode,
    with the same arithmetic) and its 1008 unbiased logits."""

    name = "inception"
    n_classes = 1008

    def __init__(self, state: dict[str, torch.Tensor], path: Path, digest: str,
                 dims: int = 2048, resize: str = "legacy", tf32: bool = False) -> None:
        super().__init__(resize, tf32)
        if dims not in INCEPTION_DIMS:
            raise UserError(f"fid.dims={dims} is not valid for the Inception extractor: one of "
                            f"{', '.join(map(str, INCEPTION_DIMS))} (2048: pool3, the standard).")
        net = fid_inception_structure()
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise UserError(f"{path} does not hold FID Inception weights "
                            f"({str(err).splitlines()[0]}); use "
                            "pt_inception-2015-12-05-6726825d.pth.") from None
        self.dims = dims
        self.weights_id = f"{path.stem}-{digest}"
        pool = nn.MaxPool2d(kernel_size=3, stride=2)
        self.stages = nn.ModuleList(nn.Sequential(*s) for s in (
            [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, pool],
            [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b,
             net.Mixed_6c, net.Mixed_6d, net.Mixed_6e],
            [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c]))
        self.fc = net.fc
        self.last = INCEPTION_DIMS.index(dims)
        self.eval().requires_grad_(False)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def weights_file(cls, weights: str | None) -> Path:
        return Path(weights).expanduser() if weights else hub_weights_file()

    @classmethod
    def create(cls, dims: int | None, weights: str | None, resize: str, tf32: bool
               ) -> InceptionExtractor:
        """Built on every rank from the weights rank 0 read."""
        from ganqp_cli.metrics.ranks import on_main

        def read() -> tuple[dict[str, torch.Tensor], Path, str]:
            state, path = load_inception_weights(weights)
            return state, path, file_digest(path)

        state, path, digest = on_main(read)
        return cls(state, path, digest, 2048 if dims is None else dims, resize, tf32)

    def _run(self, images: torch.Tensor, logits: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.resize == "clean":
            x = to_rgb(clean_resize(images, INCEPTION_RES).to(images.device)).div(255)
        else:
            x = legacy_resize(to_rgb(images).float().div(255), INCEPTION_RES)
        x = (2 * x - 1).contiguous(memory_format=torch.channels_last)
        feats = out = None
        for i, stage in enumerate(self.stages):
            if i > self.last and not logits:
                break
            x = stage(x)
            if i == self.last:
                feats = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if logits:
            pool3 = F.adaptive_avg_pool2d(x, 1).flatten(1)
            out = pool3 @ self.fc.weight.T
        return feats.float(), out
