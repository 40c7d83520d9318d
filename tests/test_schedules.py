"""`schedule.*`: the curves' closed forms, every kind of target set and logged by a real run,
the position kept in the checkpoint (a resumed run continues bitwise, also with another batch
size), and bad schedules refused before any work."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ganqp_cli.schedules import Curve, parse
from tests.conftest import TINY, assert_same_state, read_metrics
from tests.test_resume import crash_after, load, losses


def test_curves_closed_forms():
    lin = parse("s", {"kind": "linear", "start": 1.0, "end": 3.0, "kimg": 4, "delay_kimg": 2})
    assert [lin.value(k) for k in (0, 2, 3, 5, 6, 100)] == [1.0, 1.0, 1.5, 2.5, 3.0, 3.0]
    cos = parse("s", {"kind": "cosine", "start": 2e-4, "end": 5e-5, "kimg": 20000})
    assert cos.value(0) == 2e-4 and cos.value(20000) == pytest.approx(5e-5, rel=1e-15)
    # R3GAN's cosine decay: base + (1 - (1 + cos(pi t)) / 2) (final - base)
    assert cos.value(5000) == pytest.approx(2e-4 + (1 - (1 + math.cos(math.pi / 4)) / 2)
                                            * (5e-5 - 2e-4), rel=1e-14)
    ramp = parse("s", {"kind": "ramp", "start": 0.0, "end": 1.0, "kimg": 10})
    floor = math.exp(-5)
    assert ramp.value(0) == 0.0 and ramp.value(10) == pytest.approx(1.0)
    assert ramp.value(5) == pytest.approx((math.exp(-5 * 0.25) - floor) / (1 - floor))
    assert ramp.value(2) < lin.value(2) and parse("s", 0.5) == Curve("constant", 0.5, 0.5)
    assert parse("s", {"kind": "constant", "value": 3}).value(1e9) == 3.0


SCHEDULED = ["aug=ada", "aug.target=null", "schedule.aug_p=0.3",
             "schedule.lr_d={kind:cosine,start:2e-4,end:5e-5,kimg:0.08}",
             "schedule.lr_g={kind:linear,start:1e-4,end:3e-4,kimg:0.064}",
             "schedule.beta1_d=0.2",
             "schedule.beta2_g={kind:ramp,start:0.9,end:0.99,kimg:0.1}",
             "schedule.r1={kind:linear,start:0,end:1,kimg:0.048,delay_kimg:0.016}",
             "schedule.r2={kind:constant,value:0.5}", "schedule.lecam=0.1",
             "schedule.ema_kimg={kind:linear,start:0,end:0.5,kimg:0.1}"]


def expected(key: str, images: int) -> float:
    kimg = images / 1000
    t = lambda a, d=0.0: min(max((kimg - d) / a, 0.0), 1.0)  # noqa: E731
    return {"lr_d": 2e-4 + (5e-5 - 2e-4) * (1 - math.cos(math.pi * t(0.08))) / 2,
            "lr_g": 1e-4 + 2e-4 * t(0.064), "beta1_d": 0.2,
            "beta2_g": 0.9 + 0.09 * (math.exp(-5 * (1 - t(0.1)) ** 2) - math.exp(-5))
            / (1 - math.exp(-5)),
            "r1": t(0.048, 0.016), "r2": 0.5, "lecam": 0.1, "aug_p": 0.3,
            "ema_kimg": 0.5 * t(0.1)}[key]


@pytest.mark.slow
def test_every_target_is_set_logged_and_continued_bitwise_after_a_resume(cli, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, *SCHEDULED, "train.iters=6", "train.log_every=1", "train.ckpt_every=2",
            "train.keep_ckpts=10", "train.sample_every=0", f"hydra.run.dir={run}"]
    assert cli("train", *args).code == 0
    rows, final = read_metrics(run), load(run / "checkpoints" / "last.pt")
    for row in rows:  # iteration `iter` used the values at the images seen before it
        before = (row["iter"] - 1) * 16
        assert row["kimg"] == pytest.approx((before + 16) / 1000)
        for key in ("lr_d", "lr_g", "beta1_d", "beta2_g", "r1", "r2", "lecam", "aug_p",
                    "ema_kimg"):
            assert row[f"sched_{key}"] == pytest.approx(expected(key, before), rel=1e-12), key
        half_life = expected("ema_kimg", before) * 1000
        assert row["sched_ema_beta"] == pytest.approx(0.5 ** (16 / max(half_life, 1e-8)))
        assert row["aug_p"] == 0.3 and ("reg_r1" in row) == (before > 16)
    # where the values went: the optimisers' groups, as the last iteration left them
    last = 5 * 16
    assert final["opt_d"]["param_groups"][0]["lr"] == pytest.approx(expected("lr_d", last))
    assert final["opt_d"]["param_groups"][0]["betas"][0] == 0.2
    assert final["opt_g"]["param_groups"][0]["betas"][1] == pytest.approx(
        expected("beta2_g", last))
    assert final["schedule"] == {"images": 96, "iter": 6}

    crash_after(run, 2)
    r = cli("train", *args)
    assert r.code == 0 and "resumed at iter 2" in r.out, r
    assert losses(read_metrics(run)) == losses(rows)
    assert_same_state(load(run / "checkpoints" / "last.pt"), final)


def test_the_position_survives_another_batch_size(cli, tmp_path):
    run = tmp_path / "run"
    sched = "schedule.lr_d={kind:linear,start:1e-3,end:0,kimg:0.1}"
    base = [*TINY, sched, "train.log_every=1", "train.sample_every=0", f"hydra.run.dir={run}"]
    assert cli("train", *base, "train.iters=2", "train.ckpt_every=2").code == 0
    r = cli("train", *base, "train.iters=4", "train.batch_size=8")
    assert r.code == 0 and "resumed at iter 2" in r.out, r
    rows = read_metrics(run)
    # 2 x 16 images, then 8 per iteration: iteration 4 starts at 32 + 8 = 40 images
    assert [row["kimg"] for row in rows] == pytest.approx([0.016, 0.032, 0.040, 0.048])
    assert rows[-1]["sched_lr_d"] == pytest.approx(1e-3 * (1 - 0.040 / 0.1))
    assert torch.load(run / "checkpoints" / "last.pt",
                      weights_only=True)["schedule"] == {"images": 48, "iter": 4}


BAD = [
    ("+schedule.gamma=1", "schedule.gamma is not a hyperparameter a schedule can set"),
    ("schedule.lr_d={kind:cos,start:1,end:2,kimg:3}", "schedule.lr_d.kind='cos'"),
    ("schedule.r1={kind:linear,start:1,end:2}", "schedule.r1.kimg=None is not valid"),
    ("schedule.beta2_d={kind:linear,start:0.9,end:1.0,kimg:3}", "schedule.beta2_d.end=1.0"),
    ("schedule.r2={kind:linear,start:1,end:2,kimg:3,steps:4}", "schedule.r2.steps is not a key"),
    ("schedule.aug_p=0.3", "aug=ada aug.target=null"),
    ("train.ema=0 schedule.ema_kimg=1", "train.ema=0 turns the EMA generator off"),
    ("schedule.ema=0.9 schedule.ema_kimg=1", "schedule.ema and schedule.ema_kimg both"),
    ("objective=wgan schedule.beta1_g=0.5", "torch.optim.RMSprop has not"),
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_schedules_name_the_key(override, message):
    from ganqp_cli.errors import UserError
    from ganqp_cli.schedules import validate_schedule
    from tests.test_objectives_math import composed
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate_schedule(composed(*override.split()))


def test_a_bad_schedule_ends_ganqp_train_before_any_work(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("train", *TINY, "schedule.r2={kind:ramp,start:-1,end:2,kimg:3}",
            f"hydra.run.dir={run}")
    assert r.code == 2 and "schedule.r2.start=-1.0 is not valid" in r.msg, r
    assert "Traceback" not in r.err and not (run / "metrics.jsonl").exists()


def test_no_schedule_logs_nothing_new(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *TINY, "train.iters=2", f"hydra.run.dir={run}").code == 0
    assert not any(k.startswith("sched_") or k == "kimg" for k in read_metrics(run)[-1])
    assert json.loads((run / "status.json").read_text())["status"] == "done"
