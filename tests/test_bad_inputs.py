"""Bad inputs, one table row each: the command, its exit code, a phrase of its one-line message, and
what must be unchanged or absent on disk afterwards (issue 14).

Every user error answers the same way: one line `gear-trt <command>: error: <what> -- fix: <how>`,
exit 2, no traceback, and nothing created or changed before the inputs were validated. Rows that
succeed with a warning check that it is one line `gear-trt <command>: warning: ...`. Rows run the CLI
in-process (fast); `subprocess=True` runs a real `python -m gear_trt` where the exact stderr of a real
process matters. Most rows fail validation before anything trains; the few that train run a handful
of steps on 32x32 images.

Placeholders in argv: {D} a 2-class 32x32 image folder, {D64} the same at 64x64, {D10} 10 classes,
{D1} one class, {D28} 28x28 images, {DRECT} 32x48, {DMIX} mixed sizes, {DX} 2 classes named x/y,
{DLINKS} with a looping and a dangling .jpg symlink, {DBROKEN} with a corrupt .jpg, {CIFAR} a CIFAR-10
folder whose batch holds a dict instead of pixels; {RUN} a finished tiny gearnn2 mobilenet_v1 run on {D} (a
fresh copy per row), {CKPT} its robust checkpoint, {ORT} its onnxruntime engine; {out} a new path for the
row's output, {tmp} the row's own folder, {busy} a non-empty folder, {empty} an empty one, {junk} a
file of garbage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch

from gear_trt.cli.main import main
from gear_trt.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY = "--train-per-class 6 --test-per-class 2 --batch-size 4 --epochs-scale 0.01 --robust-eval none --quiet"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: str  # after `gear-trt`, with {placeholders}; split on spaces
    code: int = 2
    phrase: str = ""  # must appear in the error (or warning) line
    unchanged: tuple[str, ...] = ()  # files or folders whose bytes must be the same afterwards
    absent: tuple[str, ...] = ("{out}",)  # paths that must not exist afterwards
    warning: bool = False  # code 0 rows: `phrase` is in a one-line warning
    subprocess: bool = False
    check: Optional[Callable[[dict[str, Path]], None]] = None  # more assertions on the result
    patch: Optional[Callable[[pytest.MonkeyPatch], None]] = None  # make a fault happen mid-run
    setup: Optional[Callable[[dict[str, Path]], None]] = None  # prepare the row's world (e.g. delete a file)


def _summary(path: Path) -> dict[str, Any]:
    return json.loads((path / "summary.json").read_text())


def _follows_the_like_run(world: dict[str, Path]) -> None:
    from gear_trt.artifacts.checkpoint import load_checkpoint

    small, run = _summary(world["out"]), _summary(world["RUN"])
    assert small["arch"] == run["arch"] == "mobilenet_v1"  # summary.json says what was trained
    assert load_checkpoint(world["out"] / small["stages"][0]["checkpoint"])["spec"]["family"] == "mobilenet_v1"
    assert small["stages"][0]["widths"] == run["stages"][-1]["widths"]


def _follows_the_checkpoint(world: dict[str, Path]) -> None:
    from gear_trt.artifacts.checkpoint import load_checkpoint

    spec, source = (load_checkpoint(p)["spec"] for p in (world["out"] / "checkpoints" / "final.pt", world["CKPT"]))
    assert spec["family"] == "mobilenet_v1" and spec["widths"] == source["widths"]


def _grew_at_32px(world: dict[str, Path]) -> None:
    from gear_trt.artifacts.checkpoint import load_checkpoint

    summary = _summary(world["out"])
    assert [s["name"] for s in summary["stages"]] == ["backbone", "grow", "grown", "robust"]
    assert load_checkpoint(world["out"] / "checkpoints" / "robust.pt")["spec"]["input_size"] == 32
    assert json.loads((world["out"] / "config.json").read_text())["image_size"] == 32


def _lose_checkpoints(*stages: str) -> Callable[[dict[str, Path]], None]:
    def lose(world: dict[str, Path]) -> None:
        for stage in stages:
            (world["RUN"] / "checkpoints" / f"{stage}.pt").unlink()

    return lose


def _fails_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user error raised by the first training step, after the run directory exists."""
    from gear_trt.errors import ConfigError
    from gear_trt.pipeline import fixed, stages

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConfigError("training diverged in train epoch 1: the loss is nan", "lower the learning rate (--lr)")

    monkeypatch.setattr(stages, "train", refuse)
    monkeypatch.setattr(fixed, "train", refuse)


CASES: list[Case] = [
    # -- issue 14, numbered cases ----------------------------------------------------------------------
    Case("1-symlink-loop-and-dangling-jpg", "eval {CKPT} --data {DLINKS} --split train", 0,
         "skipped 3 of 27 images in", warning=True, absent=()),
    Case("2-growth-ratio-nan", "grow --data {D} --growth-ratio nan --out {out}", 2, "--growth-ratio must be a finite number, got nan"),
    Case("2-growth-ratio-inf", "grow --data {D} --growth-ratio inf --out {out}", 2, "--growth-ratio must be a finite number, got inf"),
    Case("3-robust-eval-abc", "grow --data {D} --robust-eval abc --out {out}", 2, "--robust-eval 'abc' is not auto, none, full or a number"),
    Case("4-image-size-100000-train", "train --data {D} --image-size 100000 --out {out}", 2,
         "--image-size must be a multiple of 8 from 8 to 1024, got 100000"),
    Case("4-image-size-100000-grow", "grow --data {D} --image-size 100000 --out {out}", 2, "from 8 to 1024"),
    Case("6-like-run-of-another-arch", "grow --data {D} --pipeline small-clean --arch vgg19 --like {RUN} --out {out}", 2,
         "--arch vgg19 differs from the family of the --like run (mobilenet_v1)"),
    Case("6-like-run-followed", "grow --data {D} --pipeline small-clean --like {RUN} " + TINY + " --out {out}", 0,
         absent=(), check=_follows_the_like_run),
    Case("train-widths-from-follows-the-checkpoint", "train --data {D} --widths-from {CKPT} --epochs 1 " + TINY.split(" --epochs-scale")[0]
         + " --quiet --out {out}", 0, absent=(), check=_follows_the_checkpoint),
    Case("train-widths-from-with-another-arch", "train --data {D} --widths-from {CKPT} --arch resnet18 --out {out}", 2,
         "--arch resnet18 differs from", ),
    Case("7-like-2-class-run-on-10-class-data", "grow --data {D10} --pipeline small-clean --like {RUN} --batch-size 4 --out {out}", 2,
         "the --like run was trained on 2 classes of 32px images, this data has 10 classes"),
    Case("9-resume-with-another-seed", "grow --data {D} --seed 1 --resume --out {RUN}", 2,
         "--seed 1 differs from the run being resumed (0)", unchanged=("{RUN}",), absent=()),
    Case("11-grow-image-size-32-on-64px", "grow --pipeline gearnn2 --image-size 32 --data {D64} --growth-ratio 0.2 " + TINY + " --out {out}", 0,
         absent=(), check=_grew_at_32px),
    Case("12-fewer-images-than-one-batch", "grow --data {D} --train-per-class 6 --out {out}", 2,
         "the training split has 12 images (with --train-per-class 6), fewer than one batch of 128 -- fix: pass --batch-size 12 or less"),
    Case("12-user-error-after-the-run-dir-exists-grow", "grow --data {D} --growth-ratio 0.2 " + TINY + " --out {out}", 2,
         "training diverged", patch=_fails_in_training),
    Case("12-user-error-after-the-run-dir-exists-train", "train --data {D} --width-mult 0.05 " + TINY.replace(" --epochs-scale 0.01 --robust-eval none", "")
         + " --out {out}", 2, "training diverged", patch=_fails_in_training),
    # -- issue 14, smaller -----------------------------------------------------------------------------
    Case("train-per-class-0", "grow --data {D} --train-per-class 0 --out {out}", 2, "--train-per-class must be >= 1, got 0"),
    Case("train-per-class-minus-1", "train --data {D} --train-per-class -1 --out {out}", 2, "--train-per-class must be >= 1, got -1"),
    Case("test-per-class-0", "grow --data {D} --test-per-class 0 --out {out}", 2, "--test-per-class must be >= 1, got 0"),
    Case("new-ratio-minus-1", "grow --data {D} --new-ratio -1 --out {out}", 2, "--new-ratio must be from 0 to 4, got -1.0"),
    Case("budget-train-batch-0", "grow --data {D} --budget 300MB@train:0 --out {out}", 2, "asks for training batch 0"),
    Case("budget-zero", "grow --data {D} --budget 0k --out {out}", 2, "budget '0k' is not positive"),
    Case("export-names-a-missing-checkpoint", "export {RUN} --precision fp32 --parity-data none --stages robust,grown", 2,
         "stage grown's checkpoint", unchanged=("{RUN}/checkpoints",), absent=("{RUN}/onnx",), setup=_lose_checkpoints("grown")),
    Case("export-skips-a-missing-checkpoint-aloud", "export {RUN} --precision fp32 --parity-data none", 0,
         "skipping stage grown: its checkpoint", warning=True, absent=(), setup=_lose_checkpoints("backbone", "grow", "grown")),
    Case("eval-class-names-differ", "eval {CKPT} --data {DX} --limit 4", 0,
         "the data's class names differ from the model's (label 0: model 'a', data 'x')", warning=True, absent=()),
    Case("eval-class-count-differs", "eval {CKPT} --data {D10}", 2, "the model has 2 classes, the data 10"),
    Case("cifar-batch-with-a-dict-for-pixels", "train --data cifar10:{CIFAR} --out {out}", 2, "lacks CIFAR data or 'labels' (TypeError"),
    Case("single-class-has-a-fix", "grow --data {D1} --out {out}", 2, "has a single class ('a'); a classifier needs at least two -- fix: "),
    Case("shots-0-has-a-fix", "grow --data {D} --shots 0 --out {out}", 2, "--shots must be from 1 to 64, got 0 -- fix: pass e.g. --shots 1"),
    Case("image-size-28-has-a-fix", "grow --data {D28} --out {out}", 2, "the images are 28x28; the models take square images whose side is "
         "a multiple of 8 -- fix: pass --image-size 32"),
    Case("non-square-images-have-a-fix", "train --data {DRECT} --out {out}", 2, "the images are 32x48"),
    Case("broken-image-warning-is-one-clean-line", "eval {CKPT} --data {DBROKEN} --split train", 0,
         "skipped 1 of 25 images in", warning=True, subprocess=True, absent=()),
    Case("bench-corrupt-source-exits-2", "bench {junk}.onnx --data none --iterations 2 --warmup 0", 2, "1 of 1 rows failed, e.g. junk: "),
    # -- handled before issue 14: must not regress ---------------------------------------------------------
    Case("unknown-arch", "train --arch vgg20 --out {out}", 2, "unknown --arch 'vgg20' -- fix: choose one of vgg19, mobilenet_v1, resnet18"),
    Case("unknown-arch-grow", "grow --arch vgg20 --out {out}", 2, "unknown --arch 'vgg20'"),
    Case("unknown-pipeline", "grow --pipeline gearnn3 --out {out}", 2, "unknown --pipeline 'gearnn3'"),
    Case("unknown-preset", "grow --preset slow --out {out}", 2, "unknown --preset 'slow'"),
    Case("unknown-schedule", "train --schedule linear --out {out}", 2, "unknown lr schedule 'linear'"),
    Case("unreadable-budget", "grow --budget lots --out {out}", 2, "cannot read budget 'lots'"),
    Case("budget-bytes-without-precision", "grow --budget 3MB --out {out}", 2, "has a byte unit but no precision"),
    Case("budget-unknown-precision", "grow --budget 3MB@int4 --out {out}", 2, "unknown precision 'int4'"),
    Case("budget-below-the-backbone", "grow --data {D} --budget 10k --batch-size 4 --out {out}", 2, "budget 10,000 parameters is below the backbone"),
    Case("budget-beyond-one-shot", "grow --data {D} --budget 100M --batch-size 4 --out {out}", 2, "beyond what one shot can reach"),
    Case("budget-and-growth-ratio", "grow --budget 1M --growth-ratio 1 --out {out}", 2, "--budget and --growth-ratio both set the final size"),
    Case("baseline-budget-below-the-smallest", "grow --data {D} --pipeline small-clean --budget 100 --batch-size 4 --out {out}", 2,
         "is below the smallest vgg19"),
    Case("like-with-a-growing-pipeline", "grow --like {RUN} --out {out}", 2, "--like applies to the small-clean and small-aug baselines only"),
    Case("like-not-a-run", "grow --pipeline small-aug --data {D} --like {empty} --out {out}", 2, "is not a gear-trt run directory"),
    Case("shots-with-a-baseline", "grow --pipeline small-clean --shots 2 --out {out}", 2, "--shots applies to the growing pipelines"),
    Case("growth-pass-0", "grow --growth-pass 0 --out {out}", 2, "--growth-pass must be > 0 and <= 1, got 0.0"),
    Case("warmup-negative", "grow --warmup-epochs -1 --out {out}", 2, "--warmup-epochs must be >= 0, got -1.0"),
    Case("era-severity-11", "train --era-severity 11 --out {out}", 2, "--era-severity must be from 1 to 10, got 11"),
    Case("milestones-not-numbers", "train --milestones a,b --out {out}", 2, "--milestones 'a,b' is not a comma-separated list of numbers"),
    Case("nesterov-without-momentum", "grow --momentum 0 --out {out}", 2, "nesterov needs momentum > 0"),
    Case("learning-rate-0", "train --lr 0 --out {out}", 2, "learning rate must be > 0, got 0.0"),
    Case("batch-size-0", "grow --batch-size 0 --out {out}", 2, "batch size must be >= 1, got 0"),
    Case("image-size-not-a-multiple-of-8", "grow --data {D64} --image-size 30 --out {out}", 2, "--image-size must be a multiple of 8"),
    Case("not-a-number", "grow --lr abc --out {out}", 2, "argument --lr: invalid float value: 'abc'"),
    Case("unknown-option", "grow --foo --out {out}", 2, "unrecognized arguments: --foo"),
    Case("unknown-device", "grow --device tpu --out {out}", 2, "unknown device 'tpu'"),
    Case("jsd-without-era", "train --jsd --out {out}", 2, "--jsd needs ERA views"),
    Case("two-width-options", "train --widths 8 --width-mult 0.1 --out {out}", 2, "--widths and --width-mult both set the widths"),
    Case("widths-wrong-count", "train --data {D} --widths 8,8,8 --batch-size 4 --out {out}", 2, "vgg19 has 16 width groups, --widths gives 3"),
    Case("params-not-a-count", "train --params lots --out {out}", 2, "--params 'lots' is not a parameter count"),
    Case("params-below-the-smallest", "train --data {D} --params 100 --batch-size 4 --out {out}", 2, "--params 100 is below the smallest vgg19"),
    Case("mixed-image-sizes", "train --data {DMIX} --out {out}", 2, "images have different sizes"),
    Case("data-not-found", "grow --data /no/such/data --out {out}", 2, "data source '/no/such/data' not found"),
    Case("data-file-not-a-zip", "grow --data {junk} --out {out}", 2, "is a file but not a zip archive"),
    Case("data-without-splits", "grow --data {empty} --out {out}", 2, "holds no train/ or test/ folder"),
    Case("out-not-empty", "grow --data {D} --out {busy}", 2, "already exists and is not empty", unchanged=("{busy}",), absent=()),
    Case("resume-without-out", "grow --resume", 2, "--resume needs the run directory"),
    Case("resume-nothing-there", "train --resume --out {out}", 2, "nothing to resume"),
    Case("resume-train-without-checkpoint", "train --resume --out {empty}", 2, "has no checkpoints/final.pt to resume from",
         unchanged=("{empty}",), absent=()),
    Case("resume-a-grow-run-with-train", "train --resume --out {RUN}", 2, "is a `gear-trt grow` run, not a train run",
         unchanged=("{RUN}",), absent=()),
    Case("resume-with-another-budget", "grow --resume --out {RUN} --budget 1M", 2, "--budget 1M differs from the run being resumed (not set)",
         unchanged=("{RUN}",), absent=()),
    Case("build-engine-batches-out-of-order", "build-engine {RUN} --min-batch 8 --opt-batch 4", 2,
         "--min-batch <= --opt-batch <= --max-batch, got 8, 4, 256", unchanged=("{RUN}",)),
    Case("build-engine-opt-level-9", "build-engine {RUN} --opt-level 9", 2, "argument --opt-level: invalid choice: 9"),
    Case("export-calib-size-0", "export {RUN} --calib-size 0", 2, "argument --calib-size: must be >= 1, got 0", unchanged=("{RUN}",)),
    Case("inspect-missing", "inspect {out}.pt", 2, "does not exist"),
    Case("inspect-junk-checkpoint", "inspect {junk}", 2, "not a readable checkpoint"),
    Case("inspect-not-a-run", "inspect {empty}", 2, "not a gear-trt run directory"),
    Case("eval-limit-0", "eval {CKPT} --limit 0", 2, "argument --limit: must be >= 1, got 0"),
    Case("eval-missing-model", "eval {out}.onnx", 2, "does not exist"),
    Case("export-unknown-precision", "export {RUN} --precision fp64", 2, "unknown precision fp64", unchanged=("{RUN}",)),
    Case("export-unknown-stage", "export {RUN} --stages nope", 2, "has no stage(s) nope", unchanged=("{RUN}",)),
    Case("build-engine-tensorrt-missing", "build-engine {RUN} --backend tensorrt", 2, "TensorRT", unchanged=("{RUN}",)),
    Case("bench-missing-source", "bench {out}.onnx --data none", 2, "does not exist"),
    Case("bench-iterations-0", "bench {CKPT} --iterations 0", 2, "argument --iterations: must be >= 1, got 0"),
    Case("report-not-a-run", "report {empty}", 2, "{empty}", unchanged=("{empty}",), absent=()),
]

# Faults owned by the run directory (disk full, read-only file system, a missing summary.json, a
# second process on the same run): wt-rundir adds its rows here.
RUNDIR_CASES: list[Case] = []

ALL = CASES + RUNDIR_CASES


# -- the world the rows run in -----------------------------------------------------------------------------
def _images(root: Path, size: tuple[int, int], classes: tuple[str, ...] = ("a", "b"), n_train: int = 12, n_test: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):  # two well-separated classes: dark and bright noise
                pixels = (rng.random((*size, 3)) * 60 + 120 * (k % 2)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _cifar_with_a_dict(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": {"not": "pixels"}, "labels": [0, 1]}, f)
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data folders and one finished tiny gearnn2 run, made once for the module."""
    root = tmp_path_factory.mktemp("bad-inputs")
    os.environ.setdefault("GEAR_TRT_CACHE", str(root / "cache"))
    world = {
        "D": _images(root / "D", (32, 32)),
        "D64": _images(root / "D64", (64, 64)),
        "D10": _images(root / "D10", (32, 32), tuple(f"c{i}" for i in range(10)), n_train=2, n_test=2),
        "D1": _images(root / "D1", (32, 32), ("a",)),
        "D28": _images(root / "D28", (28, 28)),
        "DRECT": _images(root / "DRECT", (32, 48)),
        "DX": _images(root / "DX", (32, 32), ("x", "y")),
        "CIFAR": _cifar_with_a_dict(root / "cifar"),
    }
    world["DMIX"] = _images(root / "DMIX", (32, 32))
    shutil.copy(world["D64"] / "train" / "a" / "000.png", world["DMIX"] / "train" / "a" / "zzz.png")
    world["DLINKS"] = root / "DLINKS"
    shutil.copytree(world["D"], world["DLINKS"])
    links = world["DLINKS"] / "train" / "a"
    os.symlink("loop1.jpg", links / "loop2.jpg")  # a symlink loop
    os.symlink("loop2.jpg", links / "loop1.jpg")
    os.symlink(str(root / "gone.jpg"), world["DLINKS"] / "train" / "b" / "dangling.jpg")
    world["DBROKEN"] = root / "DBROKEN"
    shutil.copytree(world["D"], world["DBROKEN"])
    (world["DBROKEN"] / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")

    run = root / "RUN"
    argv = f"grow --data {world['D']} --pipeline gearnn2 --arch mobilenet_v1 --growth-ratio 0.2 {TINY} --out {run}".split()
    torch.set_num_threads(1)
    assert main(argv) == 0
    RunDir(run).release()  # as when grow's process exits: a finished run holds no .lock
    world["RUN"] = run
    return world


@pytest.fixture
def world(base: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict[str, Path]:
    """Per row: a fresh copy of the run, an output path that does not exist yet, and junk/empty/busy paths."""
    capsys.readouterr()  # the base run's output is not this row's
    monkeypatch.setenv("GEAR_TRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GEAR_TRT_CACHE", os.environ["GEAR_TRT_CACHE"])
    torch.set_num_threads(1)
    w = dict(base)
    w["RUN"] = tmp_path / "RUN"
    shutil.copytree(base["RUN"], w["RUN"])
    w["CKPT"] = w["RUN"] / "checkpoints" / "robust.pt"
    w["tmp"], w["out"] = tmp_path, tmp_path / "out"
    w["junk"] = tmp_path / "junk"
    w["junk"].write_bytes(b"this is not a checkpoint, an ONNX file or a zip")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    (tmp_path / "empty").mkdir()
    w["empty"] = tmp_path / "empty"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    w["busy"] = tmp_path / "busy"
    return w


def _fill(text: str, world: dict[str, Path]) -> str:
    return text.format(**{k: str(v) for k, v in world.items()})


def _snapshot(path: Path) -> Optional[dict[str, str]]:
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path) if p != path else "."): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _run(case: Case, argv: list[str], world: dict[str, Path], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    if not case.subprocess:
        code = main(argv)
        return code, capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "gear_trt", *argv], env=env, capture_output=True, text=True, timeout=300)
    return out.returncode, out.stderr


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_input(case: Case, world: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.id == "build-engine-tensorrt-missing":
        from gear_trt.backends.tensorrt import tensorrt_status

        if tensorrt_status()[0]:
            pytest.skip("TensorRT can run here")
    if case.setup is not None:
        case.setup(world)
    argv = _fill(case.argv, world).split()
    before = {p: _snapshot(Path(_fill(p, world))) for p in case.unchanged}
    if case.patch is not None:
        case.patch(monkeypatch)

    code, err = _run(case, argv, world, capsys)

    assert "Traceback" not in err, err
    assert code == case.code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.code == 2:
        assert lines, "no message"
        last = lines[-1]
        assert last.startswith(f"gear-trt {argv[0]}: error: ") or last.startswith("gear-trt: error: "), last
        assert " -- fix: " in last, last
        assert _fill(case.phrase, world) in last, last
    if case.warning:
        warned = [ln for ln in lines if _fill(case.phrase, world) in ln]
        assert warned and all(ln.startswith(f"gear-trt {argv[0]}: warning: ") for ln in warned), err
        assert "0x" not in err and "warnings.warn" not in err and "load_source(" not in err, err  # no address, no source line
    for p, snap in before.items():
        assert _snapshot(Path(_fill(p, world))) == snap, f"{p} changed"
    for p in case.absent:
        assert not Path(_fill(p, world)).exists(), f"{p} was left behind"
    home_runs = world["tmp"] / "home" / "runs"
    assert code == 0 or not home_runs.exists() or not any(home_runs.iterdir()), "a failed command left a run directory behind"
    if case.check is not None:
        case.check(world)


# -- the same promises through the Python API ----------------------------------------------------------------
def _ort_engine(world: dict[str, Path]) -> Path:
    from gear_trt.cli.main import main as cli

    assert cli(["build-engine", str(world["RUN"]), "--stages", "robust", "--precision", "fp32", "--parity-data", "none"]) == 0
    assert not (world["RUN"] / ".lock").exists()  # held while building, released after
    return world["RUN"] / "engines" / "robust.fp32.ort.onnx"


def test_runtime_load_of_an_ort_engine_checks_its_sidecar_like_eval(world: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    from gear_trt.errors import ArtifactError
    from gear_trt.runtime import load

    engine = _ort_engine(world)
    capsys.readouterr()
    assert load(engine).predict(np.zeros((2, 32, 32, 3), np.uint8)).indices.shape == (2, 1)
    sidecar = engine.with_name(engine.name + ".json")
    info = json.loads(sidecar.read_text())
    info["onnxruntime"]["version"] = "0.0.1"  # optimised by another onnxruntime
    sidecar.write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="optimised with onnxruntime version '0.0.1'") as err:
        load(engine)
    assert "rebuild it here" in err.value.fix
    assert main(["eval", str(engine), "--limit", "2"]) == 2  # the CLI refuses the same file
    assert "optimised with onnxruntime version '0.0.1'" in capsys.readouterr().err


def test_predict_batch_size_0_and_the_chw_hint(world: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    from gear_trt.errors import ConfigError, DataError
    from gear_trt.runtime import load

    assert main(["export", str(world["RUN"]), "--stages", "robust", "--precision", "fp32", "--parity-data", "none"]) == 0
    capsys.readouterr()
    clf = load(world["RUN"] / "onnx" / "robust.fp32.onnx")
    images = np.zeros((3, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        clf.predict(images, batch_size=0)
    assert clf.predict(images, batch_size=2).indices.shape == (3, 1)
    with pytest.raises(DataError) as err:
        clf.predict(images.transpose(0, 3, 1, 2))  # an NCHW batch
    assert "transpose(0, 2, 3, 1)" in err.value.fix
    with pytest.raises(DataError) as err:
        clf.predict(images[0].transpose(2, 0, 1))  # one CHW image
    assert "transpose(1, 2, 0)" in err.value.fix


def test_a_huge_image_size_is_refused_before_allocating(base: dict[str, Path]) -> None:
    from gear_trt.data import load_source
    from gear_trt.errors import DataError

    with pytest.raises(DataError, match="need .* GiB in memory") as err:
        load_source(str(base["D"]), "train", image_size=100_000, cache=False, progress=False)
    assert "--image-size" in err.value.fix
