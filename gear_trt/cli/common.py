"""What the run commands share around their work: reading a run's recorded options before --resume
touches it, a run directory that a user error does not leave behind (grow, train), and the lock of the
runs that export, build-engine and bench read and write into.

Stdlib only at import time (the commands' --help must not load torch).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from gear_trt.errors import ConfigError, GearError
from gear_trt.pipeline.rundir import RunDir


def recorded_options(out: Optional[str], command: str, *, resume: bool) -> Optional[dict[str, Any]]:
    """Check --out as RunDir.create will (a locked or used run is refused), writing nothing; with --resume,
    the options the run was made with (config.json), which a resumed run keeps."""
    run = RunDir.check_create(out, command, resume=resume)
    if not resume:
        return None
    config = run.read_config() or {}
    made_by = config.get("command", "grow") if config else command  # grow's config.json is its options, flat
    if made_by != command:
        raise ConfigError(f"{run.path} is a `gear-trt {made_by}` run, not a {command} run", f"resume it with gear-trt {made_by} --resume --out {out}")
    options = config.get("options", config)
    options = dict(options) if isinstance(options, dict) else {}
    if options.get("max_per_class") is not None:  # before --train-per-class, train took the first N images per class
        raise ConfigError(f"{run.path} was started by an older gear-trt (--max-per-class), whose image subset this version does not reproduce",
                          "finish it with the gear-trt that started it, or start a new run with --train-per-class/--test-per-class")
    return options


@contextlib.contextmanager
def run_directory(out: Optional[str], command: str, *, resume: bool) -> Iterator[RunDir]:
    """RunDir.create(...), removed again if a user error ends the command before any checkpoint exists
    (a re-run then starts clean instead of finding "already exists"); a resumed run is never removed."""
    existed = out is not None and Path(out).expanduser().exists()
    run = RunDir.create(out, command, resume=resume)
    try:
        yield run
    except GearError:
        if not resume and not any(run.checkpoints.glob("*.pt")):
            run.release()
            shutil.rmtree(run.path, ignore_errors=True)
            if existed:  # the user made the (empty) folder: give it back empty
                run.path.mkdir(parents=True, exist_ok=True)
        raise


@contextlib.contextmanager
def holding_runs(sources: list[str], command: str) -> Iterator[None]:
    """The lock of every run directory among `sources` for the command's duration: a run still being
    written by `gear-trt grow` is refused (RunLocked names its pid), and grow cannot start on it meanwhile."""
    with contextlib.ExitStack() as stack:
        for source in sources:
            if RunDir.is_run_dir(source):
                stack.enter_context(RunDir(source).held(command))
        yield


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low (its message becomes the command's one-line error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_evaluation_arguments(parser: argparse.ArgumentParser, *, timing_only: bool = False) -> None:
    """The options eval and bench share: which data, which corruption sweep, where it runs, where results go."""
    none = " or 'none' to time only" if timing_only else ""
    parser.add_argument("--data", metavar="SRC", default="builtin",
                        help=f"test data: builtin, cifar10:ROOT, cifar100:ROOT, a folder or a .zip{none} (default builtin)")
    parser.add_argument("--corruptions", choices=("none", "subset", "full"), default="none",
                        help="corruption sweep: subset (15 corruptions, severities 1, 3, 5, 500 images) or full (default none)")
    parser.add_argument("--limit", type=at_least(1), default=None, metavar="N",
                        help="accuracy on N evenly spaced test images (class-balanced on class-sorted data; default all)")
    parser.add_argument("--device", default=None, help="torch: cpu/cuda; onnxruntime: cpu/cuda/tensorrt; TensorRT: GPU index")
    parser.add_argument("--threads", type=at_least(1), default=None, metavar="N", help="CPU threads (torch, onnxruntime)")
