"""Every fid.* key and `ganqp fid` argument is checked before any work: bad values end with
exit 2 and a one-paragraph message naming the key, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ganqp_cli.errors import UserError
from ganqp_cli.metrics.validate import validate_fid_command, validate_fid_train

ROOT = Path(__file__).resolve().parents[1]
FID_DEFAULTS = OmegaConf.load(ROOT / "conf" / "fid" / "default.yaml")


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    samples = tmp_path / "samples"
    samples.mkdir()
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"not looked at before the checks pass")
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {"samples": samples, "ckpt": ckpt, "afile": afile}


BAD_FID = [
    ("fid.metrics=[fid,foo]", "fid.metrics"), ("fid.metrics=[]", "fid.metrics"),
    ("fid.metrics=[fid,fid]", "each at most once"), ("fid.metrics=3", "fid.metrics"),
    ("fid.resize=bicubic", "fid.resize"), ("fid.repeats=0", "fid.repeats"),
    ("fid.repeats=abc", "fid.repeats"), ("fid.best=loss", "fid.best"),
    ("fid.batch=0", "fid.batch"), ("fid.batch=2.5", "fid.batch"),
    ("fid.dims=100", "fid.dims"), ("fid.pr_k=0", "fid.pr_k"), ("fid.dc_k=x", "fid.dc_k"),
    ("fid.is_splits=-1", "fid.is_splits"), ("fid.tf32=fp16", "fid.tf32"),
    ("fid.kid_subset_size=1", "fid.kid_subset_size"), ("fid.kid_subsets=0", "fid.kid_subsets"),
    ("fid.workers=-1", "fid.workers"), ("fid.method=svd", "fid.method"),
    ("fid.extractor=vgg", "fid.extractor"), ("fid.cache=maybe", "fid.cache"),
    ("fid.seed=-2", "fid.seed"), ("fid.ref_n=1", "fid.ref_n"),
    ("fid.weights=/no/such.pth", "fid.weights=/no/such.pth"),
]


@pytest.mark.parametrize("arg,named", BAD_FID)
def test_bad_fid_keys_exit_2(arg: str, named: str, paths: dict[str, Path], cli) -> None:
    r = cli("fid", f"samples={paths['samples']}", f"ref={paths['samples']}", arg)
    assert r.code == 2, r
    assert named in r.msg and "Traceback" not in r.err


def test_bad_command_arguments_exit_2(paths: dict[str, Path], cli, tmp_path: Path) -> None:
    s, c, f = paths["samples"], paths["ckpt"], paths["afile"]
    cases = [
        ([f"samples={s}", f"ref={s}", "device=tpu"], "device='tpu'"),
        ([f"ckpt={c}", "n=1"], "n=1"), ([f"ckpt={c}", "n=abc"], "n='abc'"),
        ([f"ckpt={c}", "n=3", "fid.metrics=[pr]"], "more than 3 samples"),
        ([f"ckpt={c}", "n=5", "fid.metrics=[is]"], "fid.is_splits=10"),
        ([f"ckpt={tmp_path / 'none.pt'}"], "no such checkpoint"),
        ([f"ckpt={c}", f"samples={s}"], "not both"),
        ([f"samples={tmp_path / 'nodir'}", f"ref={s}"], "is not a directory"),
        ([f"samples={s}", f"ref={tmp_path / 'none.npz'}"], "no such statistics file"),
        ([f"samples={s}", f"ref={f}"], "neither a folder"),
        ([f"samples={s}", f"ref={s}", "data=digits"], "not both"),
        ([f"samples={s}", f"ref={s}", f"out={f}/fid.json"], "is a file"),
        ([f"samples={s}", f"ref={s}", f"out={tmp_path / 'fid.txt'}"], ".json"),
        ([f"samples={s}", f"ref={s}", f"out={s}/"], "out="),
        ([f"samples={s}", f"ref={s}", f"save_stats={tmp_path / 's.json'}"], ".npz"),
        ([f"samples={s}", f"ref={s}", "fid.repeats=2"], "needs ckpt=PATH"),
        ([f"samples={s}", f"ref={s}", "ema=yes_please"], "ema"),
        ([f"samples={s}", f"ref={s}", "res=0"], "res=0"),
        (["fid.extractor=digits"], "nothing to measure"),
    ]
    if not torch.cuda.is_available():
        cases.append(([f"samples={s}", f"ref={s}", "device=cuda"], "CUDA is not available"))
    for args, named in cases:
        r = cli("fid", *args)
        assert r.code == 2, (args, r)
        assert named in r.msg and "Traceback" not in r.err, (args, r.msg)


def train_cfg(**over) -> object:
    cfg = OmegaConf.create({"train": {"fid_every": 10, "fid_n": 100}, "fid": FID_DEFAULTS})
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in over.items()]))


@pytest.mark.parametrize("over,named", [
    ({"train.fid_every": -1}, "train.fid_every"), ({"train.fid_every": "often"}, "fid_every"),
    ({"train.fid_n": 1}, "train.fid_n"), ({"train.fid_n": "many"}, "train.fid_n"),
    ({"fid.best": "precision"}, "fid.metrics=[fid,kid]"),
    ({"fid.metrics": "[fid,is]", "train.fid_n": 5}, "fid.is_splits"),
    ({"fid.metrics": "[dc]", "train.fid_n": 5}, "more than 5"),
    ({"fid.metrics": "[fid,kid]", "fid.best": "kid_std"}, "fid.best"),
    ({"train.fid_every": 0, "fid.resize": "nearest"}, "fid.resize"),
])
def test_validate_fid_train_names_the_key(over: dict, named: str) -> None:
    with pytest.raises(UserError, match=None) as err:
        validate_fid_train(train_cfg(**over))
    assert named in str(err.value)


def test_good_settings_pass() -> None:
    validate_fid_train(train_cfg())
    validate_fid_train(train_cfg(**{"fid.metrics": "[fid,pr,dc,is]", "fid.best": "coverage",
                                    "fid.repeats": 3, "fid.resize": "clean"}))
    validate_fid_train(train_cfg(**{"train.fid_every": 0, "train.fid_n": "unused"}))
    cmd = OmegaConf.create({"fid": FID_DEFAULTS, "device": "cpu", "ckpt": None,
                            "samples": str(ROOT), "ref": str(ROOT), "n": 10, "ema": True,
                            "res": None, "save_stats": None, "out": None})
    validate_fid_command(cmd)


def test_train_refuses_bad_fid_settings_with_exit_2(cli, tmp_path: Path) -> None:
    from tests.conftest import TINY
    r = cli("train", *TINY, "train.fid_every=2", "fid.metrics=[fid,nope]", "device=cpu",
            f"hydra.run.dir={tmp_path / 'run'}")
    assert r.code == 2 and "fid.metrics" in r.msg and "Traceback" not in r.err
