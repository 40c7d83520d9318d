"""`ganqp <command> [overrides]`: dispatches to one Hydra application per sub-command.

Each sub-command has its own primary config (conf/<command>.yaml), so every Hydra feature
(overrides, -m sweeps, --cfg job, --help) works per command.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ganqp_cli.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    HeldStream,
    RunFailed,
    UserError,
    hydra_refusal,
    report_and_exit,
)
from ganqp_cli.worker_exit import exit_before_finalizing

# name -> (module, function, one-line help); a module is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("ganqp_cli.training.loop", "train",
              "train a GAN (objective=, arch=, data= config groups)"),
    "sample": ("ganqp_cli.sampling", "sample_command",
               "write a sample grid or a folder of samples from a checkpoint"),
    "reconstruct": ("ganqp_cli.reconstruct", "reconstruct_command",
                    "reconstruct, interpolate, find neighbours of or encode real images "
                    "(encoder models)"),
    "fid": ("ganqp_cli.metrics.command", "fid_command",
            "FID, KID, precision/recall, density/coverage, IS of a checkpoint or a folder of "
            "images against a reference"),
    "prepare": ("ganqp_cli.prepare", "prepare_command",
                "decode, crop and resize a data set once into a prepared set (data.root=OUT)"),
    "report": ("ganqp_cli.report.command", "report_command",
               "one self-contained HTML page of a run or a sweep: table, curves, grids"),
}

CONFIG_PATH = "pkg://ganqp_cli.conf"

# Keys that moved (old -> new): a command line with the old one is told where it went.
MOVED_KEYS = {"train.d_steps": "objective.d_steps", "train.opt_d": "objective.opt_d",
              "train.opt_g": "objective.opt_g"}


def usage() -> str:
    lines = ["usage: ganqp <command> [key=value ...] [-m] [--cfg job] [--help]", "", "commands:"]
    width = max(len(c) for c in COMMANDS)
    lines += [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "Run `ganqp <command> --help` for a command's config groups and keys.",
              "Multi-GPU: torchrun --nproc_per_node=N -m ganqp_cli train ...", "",
              "Documentation: README.md and docs/ in the ganqp repository:"]
    pages = {"train": "docs/training.md", "sample": "docs/training.md#sampling",
             "reconstruct": "docs/encoders.md", "fid": "docs/metrics.md",
             "prepare": "docs/data.md#prepared-data-sets-ganqp-prepare",
             "report": "docs/report.md"}
    lines += [f"  {name:<{width}}  {page}" for name, page in pages.items()]
    return "\n".join(lines)


def check_group_options(argv: list[str]) -> None:
    """`group=option` naming no option of a config group: say which exist (exit 2).

    Hydra finds this too, but with a search-path dump; this message names the key and the
    valid options. Sweeps (`objective=a,b`) are checked option by option."""
    conf = importlib.resources.files("ganqp_cli.conf")
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "~")):
            continue
        key, value = arg.split("=", 1)
        for old, new in MOVED_KEYS.items():
            bare = key.lstrip("+~")
            if bare == old or bare.startswith(old + "."):
                raise UserError(f"{bare} has moved to {new + bare[len(old):]}: an objective's "
                                "critic steps and optimisers live under objective.* (e.g. "
                                f"{new + bare[len(old):]}={value}).")
        group = conf.joinpath(*key.lstrip("+").split("/"))
        if value.startswith("[") and value.endswith("]"):  # several options: logger=[a,b]
            value = value[1:-1]
        if not group.is_dir() or not value or any(c in value for c in "()[]{}$"):
            continue
        if key.lstrip("+").startswith("hydra/"):  # plugins add options (submitit_local):
            continue                              # Hydra checks its own groups
        options = sorted(p.name[:-5] for p in group.iterdir() if p.name.endswith(".yaml"))
        for option in (v.strip() for v in value.split(",")):
            if option not in options and option != "null":
                raise UserError(f"{key}={option} is not an option of the config group '{key}'. "
                                f"Valid options: {', '.join(options)}.")


def remove_refused_run_dir() -> None:
    """A run refused for bad input leaves no directory behind: the run directory this
    command created, unless it holds a checkpoint (a run that met a corrupt image mid-way
    resumes from it), or one that holds nothing but Hydra's own record (so a resume refused
    in a real run directory keeps everything)."""
    from hydra.core.hydra_config import HydraConfig

    from ganqp_cli.training.rundir import CREATED
    try:
        out = Path(HydraConfig.get().runtime.output_dir).resolve()
    except ValueError:
        return
    if out == Path.cwd().resolve() or not out.is_dir():
        return
    # Only rank 0 writes into the directory, so only it goes by what it created. Every rank
    # removes a directory that holds nothing but Hydra's record: under torchrun, Hydra makes
    # the (empty) directory again for a rank that starts after rank 0 removed it.
    main_rank = os.environ.get("RANK", "0") == "0"
    ours = main_rank and out in CREATED and not (out / "checkpoints" / "last.pt").exists()
    try:  # other ranks may be removing the same folders
        if ours or {p.name for p in out.iterdir()} <= {".hydra"}:
            shutil.rmtree(out, ignore_errors=True)
            cwd = Path.cwd().resolve()
            for parent in out.parents:  # the empty date folders above it, inside the cwd
                if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
                    break
                parent.rmdir()
    except OSError:
        pass


def check_resolves(cfg: DictConfig) -> None:
    """Every interpolation of the config resolves (`${oc.env:NAME}` of an unset variable,
    `${a.b}` naming no key): else the key is named here rather than in a traceback from
    whichever code first reads it."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "a config value"
        why = (str(getattr(err, "msg", None) or err).strip().splitlines() or ["?"])[0]
        raise UserError(f"{key} cannot be resolved: {why.rstrip('.')}. Give it a plain "
                        "value on the command line (key=value).") from None


def run_hydra(command: str, task: Callable[[DictConfig], object]) -> None:
    """Run `task` as the Hydra app of `command`; bad input exits with status 2.

    Hydra reports what it refuses itself (an unknown key, an override it cannot parse) and
    exits 1 before the task starts; what it writes to stderr until then is held back, so
    that such a refusal becomes the usual one paragraph with exit status 2."""
    started = False

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=command)
    def app(cfg: DictConfig) -> object:
        nonlocal started
        started = True
        # Through sys.stderr, not a closure: launchers (submitit) pickle this function, and
        # a stream cannot be pickled. In a launcher's own process it is a plain stream.
        if isinstance(sys.stderr, HeldStream):
            sys.stderr.release()
        try:
            check_resolves(cfg)
            return task(cfg)
        except UserError as err:
            remove_refused_run_dir()
            report_and_exit(err)
        except RunFailed as err:
            report_and_exit(err, EXIT_FAILED)

    refusal = None
    sys.stderr = held = HeldStream(sys.stderr)
    try:
        app()
    except SystemExit as exit_:
        if exit_.code != 1 or started:
            raise
        refusal = hydra_refusal(held.take(), command)
    finally:
        sys.stderr = held.real
        held.release()
    if refusal is not None:
        report_and_exit(UserError(refusal))


# Hydra flags that print and exit without running the command.
PRINT_ONLY = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc",
              "--shell-completion")


def quiet_on_closed_pipe(argv: list[str]) -> None:
    """`ganqp --help | head -1`: a reader that stops early ends the command silently, as
    for any Unix tool (Python would raise BrokenPipeError from wherever the next print is,
    Hydra's own printing included). Training keeps Python's behaviour: a run holds state
    worth more than its output, so a closed pipe is an error there (status.json `failed`,
    the last checkpoint kept), not a silent death."""
    if not hasattr(signal, "SIGPIPE") or threading.current_thread() is not threading.main_thread():
        return
    training = bool(argv) and argv[0] == "train" and not any(
        a.split("=", 1)[0] in PRINT_ONLY for a in argv[1:])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN if training else signal.SIG_DFL)


ABORTED = "ganqp: aborted (Ctrl-C)"


def main(argv: list[str] | None = None) -> None:
    """The `ganqp` command. argv None: this process is the command (the console script,
    `python -m ganqp_cli`); a list: called from Python, which keeps its own Ctrl-C."""
    entry = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_on_closed_pipe(argv)
    try:
        try:
            dispatch(argv)
        except KeyboardInterrupt:
            # Ctrl-C in a command without a stop handler, or the second one of a training
            # run (the first finishes the iteration and checkpoints): a line, no traceback.
            print(ABORTED, file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        finally:
            if entry:
                abort_at_once_on_ctrl_c()
    except SystemExit as exit_:
        if entry and torchrun_worker():
            exit_before_finalizing(exit_.code)
        raise
    if entry and torchrun_worker():
        exit_before_finalizing(0)


def torchrun_worker() -> bool:
    """Whether this process created a process group (never imports torch itself)."""
    module = sys.modules.get("ganqp_cli.distributed")
    return module is not None and module.group_was_created()


def abort_at_once_on_ctrl_c() -> None:
    """From the command's end on, Ctrl-C ends the process at once with 130. What is left is
    the interpreter's exit, whose atexit hooks (torch's among them) would otherwise print a
    traceback of whichever one the KeyboardInterrupt hit: the second Ctrl-C of a stopped
    training run, pressed while it exits, lands there."""
    if threading.current_thread() is not threading.main_thread():
        return

    def abort(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):  # what the command printed is kept
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - e.g. interrupted inside that stream's write
                pass
        os.write(2, f"{ABORTED}\n".encode())
        os._exit(128 + signal.SIGINT)
    signal.signal(signal.SIGINT, abort)


def dispatch(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command = argv.pop(0)
    if command not in COMMANDS:
        print(f"ganqp: error: unknown command '{command}'. Valid commands: "
              f"{', '.join(COMMANDS)}.\n\n{usage()}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    module, func, _ = COMMANDS[command]
    try:
        check_group_options(argv)
    except UserError as err:
        report_and_exit(err)
    task = getattr(importlib.import_module(module), func)
    if command == "train":
        from ganqp_cli.distributed import prepare_launch
        try:  # device= or train.dist_timeout_s= impossible here: refused before any work
            argv = prepare_launch(argv)
        except UserError as err:
            report_and_exit(err)
    sys.argv = [f"ganqp-{command}", *argv]
    run_hydra(command, task)
