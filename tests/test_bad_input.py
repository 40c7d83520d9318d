"""Bad input to every command, table-driven: each row must end with exit status 2, one
paragraph on stderr that names the offending key or path, no traceback, and nothing left
behind (no run directory for `train`, no file in the working directory for the others).

Also: under torchrun a config error is said once and every rank exits 2, and bad data with
`data.on_error=skip` resumes exactly.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch

from ganqp_cli.cli import main
from tests.conftest import ROOT, assert_same_state, read_metrics, torchrun, write_images

BASE = ["res=16", "arch.width=0.125", "train.batch_size=16", "train.iters=2",
        "train.log_every=1", "train.sample_every=0", "train.sample_n=4", "train.workers=0"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG declaring width x height 8-bit gray pixels and holding none: PIL refuses it as
    a decompression bomb at open, as it would the real 20000 x 10000 image, for 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """The files the rows point at, made once: a trained checkpoint (no encoder), files that
    are not checkpoints, a file where a folder belongs, folders of images."""
    root = tmp_path_factory.mktemp("inputs")
    run = root / "run"
    try:
        main(["train", *BASE, f"hydra.run.dir={run}"])
    except SystemExit as exit_:
        assert exit_.code in (0, None), exit_
    (root / "afile").write_text("a file, not a folder")
    (root / "corrupt.pt").write_bytes(b"PK\x03\x04 the start of a zip and no more")
    (root / "text.pt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.ones(3)}, root / "other.pt")
    (root / "empty").mkdir()
    write_images(root / "imgs", 4, size=(16, 16))
    write_images(root / "bombs", 3, size=(16, 16))
    png_header_only(root / "bombs" / "huge.png", 20000, 10000)
    return {"ckpt": str(run / "checkpoints" / "last.pt"), "rundir": str(run),
            "afile": str(root / "afile"),
            "corrupt": str(root / "corrupt.pt"), "text": str(root / "text.pt"),
            "other": str(root / "other.pt"), "adir": str(root / "empty"),
            "imgs": str(root / "imgs"), "bombs": str(root / "bombs")}


# (command, arguments, what the message must name); sample and reconstruct get
# ckpt={ckpt} unless the row names one; train gets BASE and hydra.run.dir={run}.
ROWS = [
    # ---- train: counts, sizes, objective and network values, seeds, data, devices, paths
    ("train", "train.iters=abc", "train.iters='abc'"),
    ("train", "train.iters=0", "train.iters=0"),
    ("train", "train.batch_size=1", "BatchNorm cannot normalise"),
    ("train", "objective.lam=0", "objective.lam=0"),
    ("train", "arch.width=0", "arch.width=0"),
    ("train", "arch.z_dim=0", "arch.z_dim=0"),
    ("train", "arch.z_dim=many", "arch.z_dim='many'"),
    ("train", "seed=1.5", "seed=1.5"),
    ("train", "data=folder data.root={imgs} data.channels=2", "data.channels=2"),
    ("train", "objective.opt_d._target_=torch.optim.Adamm", "objective.opt_d._target_"),
    ("train", "objective.opt_g._target_=no_such_pkg.Opt", "objective.opt_g._target_"),
    ("train", "objective.opt_d.lr=fast", "objective.opt_d.lr='fast'"),
    ("train", "hydra.run.dir={afile}/run", "{afile} is a file"),
    ("train", "hydra.run.dir=/proc/ganqp_run", "hydra.run.dir=/proc/ganqp_run"),
    pytest.param("train", "device=cuda", "device='cuda'", marks=NO_CUDA),
    ("train", "device=tpu", "device='tpu'"),
    ("train", "res=48", "res=48"),
    ("train", "train.amp=fp8", "train.amp='fp8'"),
    ("train", "data=folder data.root={bombs} train.batch_size=4", "huge.png"),
    ("train", "data=folder data.root={afile}", "data.root={afile} is a file"),
    ("train", "resume={corrupt}", "resume={corrupt}"),
    ("train", "resume={adir}", "resume={adir} is a folder"),
    ("train", "train.iterz=5", "train.iterz is not a key"),
    # a key of another option of the group: the options that have it are named
    ("train", "data.channels=1", "it belongs to data=folder"),
    ("train", "objective.gp=3", "it belongs to objective=wgan-gp"),
    ("train", "train.iters=[1,2", "train.iters=[1,2"),
    ("train", "res=${{oc.env:GANQP_NO_SUCH_VARIABLE}}", "res cannot be resolved"),
    # ---- sample: counts, batch, grid rows, interpolation, temperature, device, out, ckpt
    ("sample", "n=0", "n=0"),
    ("sample", "n=lots", "n='lots'"),
    ("sample", "n=20000", "n=20000"),
    ("sample", "batch=0", "batch=0"),
    ("sample", "nrow=0", "nrow=0"),
    ("sample", "interp=true interp_steps=1", "interp_steps=1"),
    ("sample", "temperature=0", "temperature=0"),
    ("sample", "temperature=hot", "temperature='hot'"),
    ("sample", "temperature=nan", "temperature=nan"),
    pytest.param("sample", "device=cuda", "device='cuda'", marks=NO_CUDA),
    ("sample", "device=gpu0", "device='gpu0'"),
    ("sample", "out={afile}/grid.png", "{afile} is a file"),
    ("sample", "out=/proc/grid.png", "/proc is not writable"),
    ("sample", "out=grid.gif", "out='grid.gif'"),
    ("sample", "out=grid", "out='grid'"),
    ("sample", "out=grids/", "out='grids/'"),
    ("sample", "format=folder out={afile}", "{afile} is a file"),
    ("sample", "format=zip", "format='zip'"),
    ("sample", "ckpt=/no/such/last.pt", "ckpt=/no/such/last.pt"),
    ("sample", "ckpt={corrupt}", "ckpt={corrupt} is not a ganqp checkpoint"),
    ("sample", "ckpt={other}", "ckpt={other} is a torch file but not a ganqp checkpoint"),
    ("sample", "ckpt={adir}", "ckpt={adir} is a folder"),
    ("sample", "ema=maybe", "ema='maybe'"),
    ("sample", "colour=red", "colour is not a key"),
    # ---- reconstruct
    ("reconstruct", "mode=morph", "mode='morph'"),
    ("reconstruct", "n=0", "n=0"),
    ("reconstruct", "k=-1", "k=-1"),
    ("reconstruct", "pool=0", "pool=0"),
    ("reconstruct", "temperature=0", "temperature=0"),
    ("reconstruct", "split=test", "split='test'"),
    ("reconstruct", "metric=manhattan", "metric='manhattan'"),
    ("reconstruct", "device=npu", "device='npu'"),
    ("reconstruct", "out=recon.gif", "out='recon.gif'"),
    ("reconstruct", "out={afile}/recon.png", "{afile} is a file"),
    ("reconstruct", "mode=encode out=codes.png", "out='codes.png'"),
    ("reconstruct", "images=/no/such/dir", "images=/no/such/dir"),
    ("reconstruct", "", "objective=gan-qp, which has no encoder"),
    # ---- fid
    ("fid", "ckpt={ckpt} n=1", "n=1"),
    ("fid", "ckpt=/no/such.pt", "ckpt=/no/such.pt"),
    ("fid", "samples=/no/such/dir", "samples=/no/such/dir"),
    ("fid", "samples={adir}", "samples={adir} holds no images"),
    ("fid", "ckpt={ckpt} samples={imgs}", "not both"),
    ("fid", "ckpt={ckpt} ref=/no/such.npz", "ref=/no/such.npz"),
    ("fid", "ckpt={ckpt} out=fid.txt", "out='fid.txt'"),
    ("fid", "ckpt={ckpt} out={afile}/fid.json", "{afile} is a file"),
    ("fid", "ckpt={ckpt} save_stats=stats.npy", "save_stats='stats.npy'"),
    ("fid", "ckpt={ckpt} fid.metrics=[fid,fun]", "fid.metrics"),
    ("fid", "ckpt={ckpt} fid.batch=0", "fid.batch=0"),
    ("fid", "ckpt={ckpt} fid.extractor=vgg", "fid.extractor='vgg'"),
    pytest.param("fid", "ckpt={ckpt} device=cuda", "device='cuda'", marks=NO_CUDA),
    ("fid", "ckpt={ckpt} res=0", "res=0"),
    ("fid", "ckpt={corrupt}", "ckpt={corrupt} is not a ganqp checkpoint"),
    ("fid", "ckpt={adir}", "ckpt={adir} is a folder"),
    ("fid", "samples={imgs} fid.repeats=2", "fid.repeats=2"),
    ("fid", "", "nothing to measure"),
    # ---- prepare
    ("prepare", "data=digits res=17 out=p", "res=17"),
    ("prepare", "data=digits res=16 out={afile}/p", "{afile} is a file"),
    ("prepare", "data=digits res=16 out=/proc/p", "/proc is not writable"),
    ("prepare", "data=digits res=16 out=p workers=-1", "workers=-1"),
    ("prepare", "data=digits res=16 out=p chunk=0", "chunk=0"),
    ("prepare", "data=ring8 res=16 out=p", "data=ring8 holds points"),
    ("prepare", "data=folder res=16 out=p", "data.root is required"),
    ("prepare", "data=digits res=16 out={adir}", "out={adir} exists"),
    ("prepare", "data=digits res=16 out=p overwrite=maybe", "overwrite='maybe'"),
    ("prepare", "res=16 out=p", "data= is required"),
    # ---- report
    ("report", "runs={adir}", "runs={adir} holds no run of `ganqp train`"),
    ("report", "runs=/no/such/dir", "runs=/no/such/dir is not a directory"),
    ("report", "runs={rundir} out=/proc/report.html", "/proc is not writable"),
    ("report", "runs={rundir} out={afile}/report.html", "{afile} is a file"),
    ("report", "runs={rundir} out=report.pdf", "out='report.pdf'"),
    ("report", "", "runs is required"),
    # ---- train's logger group (a missing package: tests/test_trackers.py)
    ("train", "logger=neptune", "logger=neptune is not an option"),
    ("train", "logger=[csv,neptune]", "logger=neptune is not an option"),
]


def row_id(row: object) -> str:
    command, args, _ = row.values if hasattr(row, "values") else row
    return f"{command}:{args or '(none)'}"


def argv(command: str, args: str, inputs: dict[str, str], run: Path) -> list[str]:
    given = [a.format(**inputs) for a in args.split()]
    if command == "train":
        own_dir = any(a.startswith("hydra.run.dir=") for a in given)
        return [*BASE, *given, *([] if own_dir else [f"hydra.run.dir={run}"])]
    if command in ("sample", "reconstruct") and not any(a.startswith("ckpt=") for a in given):
        return [f"ckpt={inputs['ckpt']}", *given]
    return given


@pytest.mark.parametrize(("command", "args", "names"), ROWS, ids=[row_id(r) for r in ROWS])
def test_bad_input_is_one_paragraph_exit_2_and_leaves_nothing(cli, inputs, tmp_path,
                                                              monkeypatch, command, args,
                                                              names):
    cwd, run = tmp_path / "cwd", tmp_path / "run"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    r = cli(command, *argv(command, args, inputs, run))
    assert r.code == 2, r
    assert "Traceback" not in r.err and "HYDRA_FULL_ERROR" not in r.err, r
    paragraphs = [p for p in r.err.strip().split("\n\n") if p.strip()]
    assert len(paragraphs) == 1 and r.err.startswith("ganqp: error: "), r
    assert names.format(**inputs) in r.msg, r
    assert not run.exists()  # train: the run directory it was given is not left behind
    assert list(cwd.iterdir()) == []  # no output file, no outputs/ folder
    assert Path(inputs["afile"]).is_file()


def test_the_table_holds_at_least_60_rows_over_every_command():
    commands = [(r.values if hasattr(r, "values") else r)[0] for r in ROWS]
    assert len(ROWS) >= 60
    assert set(commands) == {"train", "sample", "reconstruct", "fid", "prepare", "report"}


def test_the_docs_quote_the_tables_row_counts():
    """README.md and docs/reliability.md give the number of bad inputs: the rows of ROWS,
    per command too. A row added here without the docs fails this test."""
    counts = Counter((r.values if hasattr(r, "values") else r)[0] for r in ROWS)
    readme = (ROOT / "README.md").read_text()
    assert re.findall(r"(\d+) kinds of bad input", readme) == [str(len(ROWS))]
    page = " ".join((ROOT / "docs" / "reliability.md").read_text().split())  # lines joined
    found = re.findall(r"\*\*(\d+) bad inputs refused\*\* \(((?:\d+ [a-z]+(?:, )?)+);", page)
    assert len(found) == 1, "docs/reliability.md: '**N bad inputs refused** (n train, ...;'"
    total, per = found[0]
    assert int(total) == len(ROWS)
    assert {cmd: int(n) for n, cmd in (part.split() for part in per.split(", "))} == counts
    cuda_rows = sum(1 for r in ROWS if hasattr(r, "marks") and NO_CUDA in r.marks)
    assert f"the {cuda_rows} `device=cuda` rows are skipped" in page
    assert f"with CUDA, where {len(ROWS) - cuda_rows} run" in page


def test_a_late_rank_removes_the_directory_hydra_made_for_it(cli, tmp_path, monkeypatch):
    """Under torchrun Hydra makes the run directory on every rank; a rank that starts after
    rank 0 has removed a refused run's directory makes it again, and must remove it too
    (seen in CI). As rank 1, a refused run leaves nothing behind."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.chdir(tmp_path)  # the date folder above the run, inside the cwd, goes too
    run = tmp_path / "day" / "run"
    r = cli("train", *BASE, "arch.width=0", f"hydra.run.dir={run}")
    assert r.code == 2 and r.err == "", r  # rank 0 is the one that says why
    assert not run.exists() and not run.parent.exists()
    (run / "checkpoints").mkdir(parents=True)  # a real run's directory stays
    (run / "metrics.jsonl").write_text("")
    assert cli("train", *BASE, "arch.width=0", f"hydra.run.dir={run}").code == 2
    assert (run / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_a_config_error_under_torchrun_is_said_once_and_every_rank_exits_2(tmp_path):
    run, exits = tmp_path / "run", tmp_path / "exits"
    exits.mkdir()
    # The agent stops the other ranks once it sees one fail; looking every 10 s (not 0.1 s)
    # gives every rank time to reach the refusal itself, even on a loaded machine.
    r = torchrun("train", *BASE, "train.batch_size=8", "arch.width=0", f"hydra.run.dir={run}",
                 cwd=tmp_path, script=str(ROOT / "tests" / "rank_exit.py"), timeout=300,
                 agent=("--monitor-interval=10",), env={"GANQP_RANK_EXITS": str(exits)})
    assert r.returncode != 0
    said = (r.stdout + r.stderr).count("ganqp: error: arch.width=0 is not valid")
    assert said == 1, r.stderr[-3000:]
    # each rank's own exit status, as it wrote it
    assert {p.name: p.read_text() for p in exits.iterdir()} == {"rank0": "2", "rank1": "2"}
    assert not run.exists()


def test_skipped_images_resume_exactly(cli, tmp_path):
    """data.on_error=skip: unreadable images are logged once each, counted in metrics.jsonl,
    replaced deterministically, so a resumed run equals an uninterrupted one."""
    paths = write_images(tmp_path / "imgs", 12, size=(16, 16))
    for i in (2, 7):
        paths[i].write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    args = [*BASE, "data=folder", f"data.root={tmp_path / 'imgs'}", "data.on_error=skip",
            "train.batch_size=4", "train.ckpt_every=2", "train.keep_ckpts=0"]
    one, two = tmp_path / "one", tmp_path / "two"
    r = cli("train", *args, "train.iters=4", f"hydra.run.dir={one}")
    assert r.code == 0, r
    for name in ("img_002.png", "img_007.png"):  # logged once each, however often drawn
        assert sum(name in line for line in r.err.splitlines()) == 1, r.err
    assert "np.str_" not in r.err
    assert cli("train", *args, "train.iters=2", f"hydra.run.dir={two}").code == 0
    assert cli("train", *args, "train.iters=4", f"hydra.run.dir={two}").code == 0
    timing = ("it_per_s", "img_per_s", "elapsed_s")
    rows = [[{k: v for k, v in row.items() if k not in timing} for row in read_metrics(run)]
            for run in (one, two)]
    assert rows[0] == rows[1] and rows[0][-1]["data_skipped"] > 0
    a, b = (torch.load(run / "checkpoints" / "last.pt", weights_only=True)
            for run in (one, two))
    a["config"], b["config"] = json.dumps(a["config"]), json.dumps(b["config"])
    assert_same_state(a, b)
