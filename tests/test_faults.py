"""Faults around a run directory: a full or read-only disk at any write, two processes on one run, a lost or
corrupt summary.json, file modes. Each answered with one line and exit 2, nothing lost, `--resume` finishing.

The full-disk test fills a real tmpfs where this process may mount one (root, mount allowed) and otherwise
makes the checkpoint write raise ENOSPC part-way; both go through the same atomic write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest
import torch

from gear_trt.artifacts.checkpoint import load_checkpoint
from gear_trt.cli.main import main
from gear_trt.errors import StorageError
from gear_trt.io import atomic_write, atomic_write_json, atomic_write_text
from gear_trt.rundir import ABANDONED, RunDir

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--arch", "vgg19", "--width-mult", "0.05", "--max-per-class", "4", "--batch-size", "8", "--quiet", "--epochs", "3"]
GROW = ["grow", "--pipeline", "gearnn2", "--growth-ratio", "0.3", "--train-per-class", "12", "--test-per-class", "4", "--batch-size", "30",
        "--epochs-scale", "0.25", "--robust-eval", "none"]
LOCKED = "is being written by another gear-trt process (pid"


@pytest.fixture(autouse=True)
def isolated(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GEAR_TRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GEAR_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "data-cache"))
    torch.set_num_threads(1)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root`: (sha256, mode). Equal snapshots: nothing was created, changed or removed."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- a small real disk, where allowed


@contextlib.contextmanager
def small_disk(path: Path, kib: int) -> Iterator[Optional[Callable[..., None]]]:
    """Mount a `kib` KiB tmpfs at `path` and yield `remount(size_kib=None, read_only=False)`; yield None
    (and leave `path` a plain folder) where this process may not mount."""
    path.mkdir(parents=True, exist_ok=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True).returncode != 0:
        yield None
        return

    def remount(size_kib: Optional[int] = None, read_only: bool = False) -> None:
        opts = ",".join(["remount", "ro" if read_only else "rw"] + ([f"size={size_kib}k"] if size_kib else []))
        subprocess.run(["mount", "-o", opts, str(path)], check=True, capture_output=True)

    try:
        yield remount
    finally:
        for run in [p for p in path.iterdir() if p.is_dir()]:
            RunDir(run).release()
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _enospc_on_second_checkpoint(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Without a mountable disk: the second checkpoint write fails part-way with ENOSPC (as a full disk
    does), through the real atomic write. Returns a function that frees the space again."""
    import gear_trt.train.loop as loop

    real = loop.save_checkpoint
    calls = []

    def save(path, payload):
        calls.append(path)
        if len(calls) != 2:
            return real(path, payload)

        def half_then_full(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                f.write(b"\0" * 4096)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return atomic_write(path, half_then_full)

    monkeypatch.setattr(loop, "save_checkpoint", save)
    return lambda: monkeypatch.setattr(loop, "save_checkpoint", real)


def test_disk_full_during_a_checkpoint_fails_the_stage_keeps_the_last_checkpoint_and_resumes(tmp_path, capsys, monkeypatch):
    assert main([*TRAIN, "--out", str(tmp_path / "full")]) == 0  # the uninterrupted reference
    ckpt_bytes = (tmp_path / "full" / "checkpoints" / "final.pt").stat().st_size
    capsys.readouterr()

    # room for the run's small files and one checkpoint, not for the second epoch's temp copy beside it
    with small_disk(tmp_path / "disk", kib=(ckpt_bytes * 3 // 2) // 1024) as remount:
        free_space = (lambda: remount(size_kib=4 * ckpt_bytes // 1024)) if remount else _enospc_on_second_checkpoint(monkeypatch)
        run = tmp_path / "disk" / "run"
        assert main([*TRAIN, "--out", str(run)]) == 2
        line = _one_line_error(capsys)
        assert "no space left on the device" in line and "checkpoints/final.pt" in line and "--resume" in line
        record = json.loads((run / "manifest.json").read_text())["stages"]["train"]
        assert record["status"] == "failed" and "no space left on the device" in record["error"]
        kept = load_checkpoint(run / "checkpoints" / "final.pt")  # the last good checkpoint, intact
        assert kept["epoch"] == 1 and not kept["complete"]
        assert [p.name for p in (run / "checkpoints").iterdir()] == ["final.pt"]  # no temp file left behind

        free_space()
        assert main(["train", "--resume", "--quiet", "--out", str(run)]) == 0
        full = load_checkpoint(tmp_path / "full" / "checkpoints" / "final.pt")
        done = load_checkpoint(run / "checkpoints" / "final.pt")
        assert done["complete"] and all(torch.equal(full["model"][k], done["model"][k]) for k in full["model"])
        assert json.loads((run / "manifest.json").read_text())["stages"]["train"]["status"] == "done"
        assert [s["name"] for s in json.loads((run / "summary.json").read_text())["stages"]] == ["train"]


def test_a_manifest_that_cannot_be_written_is_named_in_the_message_and_repaired_on_resume(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path / "run", "grow", argv=[])
    import gear_trt.rundir as rundir

    real = rundir.atomic_write_json

    def no_space(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full(path, obj):  # the disk fills up just as the failure is to be recorded
        if Path(path).name == "manifest.json" and obj["stages"].get("backbone", {}).get("status") == "failed":
            return atomic_write(path, no_space)
        return real(path, obj)

    monkeypatch.setattr(rundir, "atomic_write_json", full)
    with pytest.raises(StorageError) as caught:
        with run.manifest.run_stage("backbone"):
            atomic_write_text(run.checkpoint("backbone"), "x")  # fine
            raise StorageError("cannot write checkpoints/backbone.pt: no space left on the device", "free some space")
    assert "manifest.json could not be updated either" in caught.value.message and "'backbone' is running" in caught.value.message
    monkeypatch.setattr(rundir, "atomic_write_json", real)
    assert json.loads(run.manifest_path.read_text())["stages"]["backbone"]["status"] == "running"  # what the disk holds

    run.release()  # as if that process had exited; the next invocation repairs the record
    again = RunDir.create(tmp_path / "run", "grow", resume=True, argv=[])
    record = json.loads(again.manifest_path.read_text())["stages"]["backbone"]
    assert record["status"] == "interrupted" and record["error"] == ABANDONED


def _resumable_train_run(path: Path) -> RunDir:
    """A train run directory that `train --resume` accepts (options recorded, a checkpoint present): the
    resume gets as far as its first write."""
    run = RunDir.create(path, "train", argv=[])
    run.release()
    run.write_config({"command": "train", "options": {"width_mult": 0.05, "train_per_class": 4, "test_per_class": 4, "batch_size": 8, "epochs": 3}})
    run.checkpoint("final").write_bytes(b"a checkpoint")
    return run


def _read_only_os_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a mountable disk: every file creation is refused with EROFS, as on a read-only file system."""
    real_open = os.open

    def ro_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", ro_open)


def test_a_read_only_file_system_is_one_line_and_changes_nothing(tmp_path, capsys, monkeypatch):
    with small_disk(tmp_path / "ro", kib=2048) as remount:
        run = _resumable_train_run(tmp_path / "ro" / "run")
        before = snapshot(run.path)
        with monkeypatch.context() as m:
            remount(read_only=True) if remount else _read_only_os_open(m)
            for argv in (["train", "--resume", "--quiet", "--out", str(run.path)], [*TRAIN, "--out", str(run.path / "new")]):
                assert main(argv) == 2
                line = _one_line_error(capsys)
                assert "the file system is read-only" in line and "fix:" in line
        assert snapshot(run.path) == before
        if remount:
            remount(read_only=False)


def test_storage_errors_in_atomic_writes(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})

    def fails(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="no space left on the device"):
        atomic_write(target, fails)
    assert json.loads(target.read_text()) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]

    def bug(tmp: Path) -> None:
        raise ValueError("a bug stays a bug")

    with pytest.raises(ValueError):
        atomic_write(target, bug)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        run = RunDir.create(tmp_path / "run", "train", argv=[])
        run.write_summary({"stages": []})
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == mode
    assert run.manifest_path.stat().st_mode & 0o777 == mode and run.summary_path.stat().st_mode & 0o777 == mode


# --------------------------------------------------------------------------- the lock


@contextlib.contextmanager
def held_by_another_process(run: Path) -> Iterator[int]:
    """A second process that creates (or resumes) `run` and holds it until the block ends. Yields its pid."""
    code = ("import sys; from gear_trt.rundir import RunDir; "
            f"RunDir.create({str(run)!r}, 'train', resume={run.is_dir()}, argv=[]); print('locked', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_process_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    with held_by_another_process(run) as pid:
        assert json.loads((run / ".lock").read_text())["pid"] == pid
        before = snapshot(run)
        for argv in (["train", "--resume", "--quiet", "--out", str(run)], [*GROW, "--out", str(run)], [*GROW, "--resume", "--out", str(run)]):
            assert main(argv) == 2
            line = _one_line_error(capsys)
            assert f"{LOCKED} {pid}: `gear-trt train`" in line and f"kill {pid}" in line
            assert snapshot(run) == before
    assert not (run / ".lock").exists()  # released when the holder exited
    invocations = json.loads((run / "manifest.json").read_text())["invocations"]
    assert [i["pid"] for i in invocations] == [pid]  # the refused ones left no trace


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    run = tmp_path / "run"
    code = ("import os, signal; from gear_trt.rundir import RunDir; "
            f"r = RunDir.create({str(run)!r}, 'grow', argv=[]); r.manifest.start_stage('backbone'); "
            "print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert killed.returncode == -signal.SIGKILL
    dead = int(killed.stdout.split()[0])
    assert json.loads((run / ".lock").read_text())["pid"] == dead
    assert json.loads((run / "manifest.json").read_text())["stages"]["backbone"]["status"] == "running"

    again = RunDir.create(run, "grow", resume=True, argv=[])
    err = capsys.readouterr().err
    assert f"was left by process {dead}" in err and "taking the run over" in err
    assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    assert again.manifest.stage("backbone")["status"] == "interrupted"
    again.release()
    assert not (run / ".lock").exists()


# --------------------------------------------------------------------------- summary.json rebuilt, never emptied


@pytest.fixture(scope="module")
def grown_run(tmp_path_factory) -> Path:
    """A finished tiny gearnn2 run (backbone, grow, grown, robust)."""
    path = tmp_path_factory.mktemp("grown") / "run"
    env = {**os.environ, "GEAR_TRT_HOME": str(path.parent / "home")}
    subprocess.run([sys.executable, "-m", "gear_trt", *GROW, "--out", str(path)], env={**env, "PYTHONPATH": str(REPO)},
                   check=True, capture_output=True, timeout=900)
    return path


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _stages(run: Path) -> list[dict]:
    return json.loads((run / "summary.json").read_text())["stages"]


def test_a_lost_summary_is_rebuilt_by_resume(grown_run, tmp_path, capsys):
    run = _copy(grown_run, tmp_path / "run")
    original = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in original["stages"]] == ["backbone", "grow", "grown", "robust"]
    (run / "summary.json").unlink()
    assert main([*GROW, "--resume", "--out", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text()) == original
    assert "backbone  " in capsys.readouterr().out  # the stage table is printed from it


def test_the_fix_printed_for_a_corrupt_summary_restores_it(grown_run, tmp_path, capsys):
    run = _copy(grown_run, tmp_path / "run")
    original = _stages(run)
    (run / "summary.json").write_text("{broken")
    assert main(["report", str(run)]) == 2
    line = _one_line_error(capsys)
    assert "not valid JSON" in line and "--resume" in line
    assert main([*GROW, "--resume", "--out", str(run)]) == 0  # the fix, as printed
    assert _stages(run) == original
    assert main(["report", str(run)]) == 0


def test_a_summary_lost_from_an_older_run_is_rebuilt_from_checkpoints(grown_run, tmp_path):
    """Manifests written before stage entries were kept in them: the entry comes from the checkpoint and
    the manifest's metrics; nothing is silently emptied."""
    run = _copy(grown_run, tmp_path / "run")
    original = _stages(run)
    manifest = json.loads((run / "manifest.json").read_text())
    for record in manifest["stages"].values():
        record.pop("entry")
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "summary.json").unlink()
    assert main([*GROW, "--resume", "--out", str(run)]) == 0
    rebuilt = _stages(run)
    assert [s["name"] for s in rebuilt] == [s["name"] for s in original]
    same = ("checkpoint", "params", "param_bytes", "widths", "clean_acc", "robust_acc", "kind", "epochs", "augmented")
    for new, old in zip(rebuilt, original):
        assert {k: new[k] for k in same} == {k: old[k] for k in same}
        assert new["seconds"] > 0 and "manifest.json" in new["rebuilt"]


# --------------------------------------------------------------------------- rows for tests/test_bad_inputs.py


@dataclasses.dataclass(frozen=True)
class Row:
    """One bad input: the command (RUN = the run directory the setup made), its exit code, a phrase of its
    one-line message, and what must be unchanged on disk afterwards."""

    id: str
    argv: tuple[str, ...]
    code: int
    phrase: str
    unchanged: str  # "run": every file of RUN, byte for byte
    setup: str  # how RUN is prepared: see _prepare


ROWS = [
    Row("resume-a-run-another-process-writes", ("train", "--resume", "--quiet", "--out", "RUN"), 2, LOCKED, "run", "locked"),
    Row("new-run-into-a-run-another-process-writes", (*GROW, "--out", "RUN"), 2, LOCKED, "run", "locked"),
    # export, build-engine and bench write into a run (or read its checkpoints): not while another process trains it
    Row("export-a-run-another-process-writes", ("export", "RUN", "--precision", "fp32", "--parity-data", "none"), 2, LOCKED, "run", "locked"),
    Row("build-engine-on-a-run-another-process-writes", ("build-engine", "RUN", "--precision", "fp32", "--parity-data", "none"), 2, LOCKED,
        "run", "locked"),
    Row("bench-a-run-another-process-writes", ("bench", "RUN", "--data", "none"), 2, LOCKED, "run", "locked"),
    Row("report-with-a-corrupt-summary", ("report", "RUN"), 2, "re-run the pipeline with --resume", "run", "corrupt-summary"),
    Row("train-resume-on-a-read-only-disk", ("train", "--resume", "--quiet", "--out", "RUN"), 2, "the file system is read-only", "run", "read-only"),
]


@contextlib.contextmanager
def _prepare(setup: str, run: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if setup == "locked":
        with held_by_another_process(run):
            yield
    elif setup == "corrupt-summary":
        RunDir.create(run, "train", argv=[]).release()
        run.joinpath("summary.json").write_text("{broken")
        yield
    elif setup == "read-only":
        _resumable_train_run(run)
        with monkeypatch.context() as m:
            _read_only_os_open(m)
            yield
    else:
        raise AssertionError(setup)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_rows(row: Row, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with _prepare(row.setup, run, monkeypatch):
        before = snapshot(run)
        assert main([str(run) if a == "RUN" else a for a in row.argv]) == row.code
        line = _one_line_error(capsys)
        assert row.phrase in line and "fix:" in line
        if row.unchanged == "run":
            assert snapshot(run) == before
