"""The run directory: the one place that knows where a run's files are, and the manifest that records them.

    RUN_DIR/
      .lock           held by the process writing the run (its pid); gone when it exits
      config.json     the resolved options of the run (every default filled in)
      manifest.json   environment versions, each invocation, each stage's status, parameters,
                      timings, metrics, summary entry and the sha256 of every artifact it wrote
      summary.json    the run's results, one entry per finished stage (the report reads it); derived
                      from the manifest, so a lost or corrupt summary is rebuilt by the next --resume
      growth.json     the growth decisions (grow stages)
      checkpoints/    <stage>.pt
      logs/           <stage>.log (one line per epoch or event, appended)
      eval/           <model>[-<precision>].json corruption sweeps
      onnx/           <stage>.<precision>.onnx, calibration.json      (export)
      engines/        <stage>.<precision>.engine | .ort.onnx + sidecar (build-engine)
      bench.json      the deployment table                              (bench)
      deploy_cost.json  the final model's int8 size and batch-1 latency, bench.json's format (sweep deploy_cost)
      report/         report.html, report.md                            (report)

Where a run goes when no --out is given: $GEAR_TRT_HOME/runs/<command>-<YYYYmmdd-HHMMSS>, with
GEAR_TRT_HOME defaulting to $XDG_DATA_HOME/gear-trt (~/.local/share/gear-trt). Nothing lands in
the working directory unless --out points there. Every file is written atomically.

One process writes a run at a time: `RunDir.create` takes RUN_DIR/.lock (an flock held for the
life of the process, with the pid inside, so a second process is told who holds it). A lock left
by a killed process is not held by anyone: the next run takes it over, says so, and marks the
stages the dead process left "running" as interrupted.

Stdlib only at import time: the CLI, export and the report use it before (or without) torch.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from gear_trt import __version__
from gear_trt.choices import ONNX_SUFFIX, TENSORRT_SUFFIXES
from gear_trt.errors import ArtifactError, ConfigError, GearError, RunLocked, StorageError
from gear_trt.io import atomic_write_json, json_default, sha256_file, writing
from gear_trt.records import RunSummary, StageEntry

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no run lock
    fcntl = None  # type: ignore[assignment]

PathLike = Union[str, "os.PathLike[str]"]
MANIFEST_FORMAT = "gear-trt-manifest/1"
HOME_ENV = "GEAR_TRT_HOME"
LOCK_NAME = ".lock"
# Files or folders only a gear-trt run directory has: any one of them makes a directory a run.
MARKERS = ("manifest.json", "summary.json", "checkpoints")
# Packages whose versions decide what a run computes (looked up without importing them).
VERSIONED = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pillow", "tqdm")
ABANDONED = "the process running it ended without recording how (killed, or the disk was full)"


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def warn(line: str) -> None:
    print(f"gear-trt: warning: {line}", file=sys.stderr)


def gear_home() -> Path:
    """$GEAR_TRT_HOME, else $XDG_DATA_HOME/gear-trt, else ~/.local/share/gear-trt."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "gear-trt"


def default_run_dir(command: str) -> Path:
    """A new, unused directory under gear_home()/runs named after the command and the time."""
    base = gear_home() / "runs" / f"{command}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def environment() -> dict[str, Any]:
    """Flat record of what the run ran on: versions, platform, CPUs, GPU (only if torch is loaded)."""
    env: dict[str, Any] = {"gear_trt": __version__, "python": platform.python_version(),
                           "platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    for name in VERSIONED:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():  # a Jetson: the L4T release identifies the JetPack
        with contextlib.suppress(OSError):
            env["l4t"] = tegra.read_text(errors="replace").splitlines()[0].strip("# ").strip()
    torch = sys.modules.get("torch")  # never import torch just to describe the machine
    if torch is not None:
        env["torch_cuda"] = torch.version.cuda
        with contextlib.suppress(Exception):
            if torch.cuda.is_available():
                env["cuda_device"] = torch.cuda.get_device_name(0)
                env["cuda_device_count"] = torch.cuda.device_count()
                env["cudnn"] = torch.backends.cudnn.version()
    return env


class RunDir:
    """A run directory. `RunDir(path)` only names it; `create` (writers) and `open` (readers) check it."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path).expanduser().resolve()
        self._manifest: Optional[Manifest] = None

    @staticmethod
    def is_run_dir(path: PathLike) -> bool:
        """The one test of "is this a run directory": a directory holding a manifest, a summary or checkpoints/."""
        path = Path(path)
        return path.is_dir() and any((path / m).exists() for m in MARKERS)

    @classmethod
    def create(cls, path: Optional[PathLike], command: str, *, resume: bool = False,
               argv: Optional[list[str]] = None) -> "RunDir":
        """The run directory of a command invocation, locked for this process.

        path None: a new directory under gear_home() (resume then needs an explicit path).
        Without resume the directory must be new or empty, so no run is overwritten by accident.
        """
        run = cls.check_create(path, command, resume=resume)
        with writing(run.path):
            run.path.mkdir(parents=True, exist_ok=True)
        run.lock(command)
        run.ensure()
        run.manifest.close_abandoned_stages()
        run.manifest.record_invocation(command, argv if argv is not None else sys.argv[1:])
        return run

    @classmethod
    def check_create(cls, path: Optional[PathLike], command: str, *, resume: bool = False) -> "RunDir":
        """What `create` would refuse, checked without writing anything (commands call it before their
        other checks); returns the run directory create would use."""
        if path is None:
            if resume:
                raise ConfigError("--resume needs the run directory to continue", "pass --out RUN_DIR of the interrupted run")
            path = default_run_dir(command)
        run = cls(path)
        if resume and not run.path.is_dir():
            raise ArtifactError(f"run directory {run.path} does not exist, so there is nothing to resume",
                                "check --out, or drop --resume to start a new run")
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError(f"--out {run.path} already exists and is not empty",
                              "pass --resume to continue that run, or choose a new --out directory")
        if run.path.is_dir():
            _refuse_if_locked(run.path)  # a run being written is reported as such, whatever else is wrong
            if not resume and any(p.name != LOCK_NAME for p in run.path.iterdir()):
                raise ConfigError(f"--out {run.path} already exists and is not empty",
                                  "pass --resume to continue that run, or choose a new --out directory")
        return run

    @classmethod
    def open(cls, path: PathLike) -> "RunDir":
        """An existing run directory, to read (inspect, report, export, bench)."""
        run = cls(path)
        if not run.path.is_dir():
            raise ArtifactError(f"run directory {run.path} does not exist", "pass a directory written by a gear-trt command")
        if not cls.is_run_dir(run.path):
            raise ArtifactError(f"{run.path} is not a gear-trt run directory (no manifest.json, summary.json or checkpoints/)",
                                "pass a directory written by a gear-trt command")
        return run

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- layout: every path of a run, here and nowhere else ---------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def growth_path(self) -> Path:
        return self.path / "growth.json"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def onnx_dir(self) -> Path:
        return self.path / "onnx"

    @property
    def engines_dir(self) -> Path:
        return self.path / "engines"

    @property
    def bench_path(self) -> Path:
        return self.path / "bench.json"

    @property
    def deploy_cost_path(self) -> Path:
        return self.path / "deploy_cost.json"

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def checkpoint(self, stage: str) -> Path:
        return self.checkpoints / f"{stage}.pt"

    def log_path(self, stage: str) -> Path:
        return self.logs / f"{stage}.log"

    def eval_path(self, model: str, precision: Optional[str] = None) -> Path:
        """eval/<model>.json (the pipeline's fp32 sweep) or eval/<model>-<precision>.json."""
        return self.eval_dir / (f"{model}-{precision}.json" if precision else f"{model}.json")

    def ensure(self) -> "RunDir":
        with writing(self.path):
            for d in (self.path, self.checkpoints, self.logs):
                d.mkdir(parents=True, exist_ok=True)
        return self

    def rel(self, path: PathLike) -> str:
        """`path` relative to the run directory, with '/' separators (how manifests and summaries name files)."""
        p = Path(path)
        p = p if p.is_absolute() else self.path / p
        try:
            return p.resolve().relative_to(self.path).as_posix()
        except ValueError:
            return str(p)

    def stage_checkpoints(self) -> list[tuple[str, Path]]:
        """(stage, checkpoint) of each finished stage whose checkpoint is on disk, in pipeline order: as
        summary.json lists them, else (no summary) as the manifest does, else checkpoints/*.pt by name."""
        summary = self.load_summary()
        entries = summary.stages if summary is not None else self.summary_entries()
        found = [(e.name, self.path / e.checkpoint) for e in entries if e.name and e.checkpoint and (self.path / e.checkpoint).is_file()]
        if not found and self.checkpoints.is_dir():
            found = [(p.stem, p) for p in sorted(self.checkpoints.glob("*.pt"))]
        return found

    def missing_checkpoints(self) -> dict[str, str]:
        """{stage: checkpoint} of the stages summary.json lists whose checkpoint is not on disk."""
        summary = self.load_summary()
        entries = summary.stages if summary is not None else []
        return {e.name: e.checkpoint for e in entries if e.name and e.checkpoint and not (self.path / e.checkpoint).is_file()}

    def deploy_artifacts(self) -> list[Path]:
        """Every ONNX file and engine of the run (onnx/, engines/), sorted by folder and name."""
        suffixes = (ONNX_SUFFIX, *TENSORRT_SUFFIXES)
        return [f for d in (self.onnx_dir, self.engines_dir) if d.is_dir() for f in sorted(d.iterdir()) if f.suffix in suffixes]

    def eval_files(self) -> list[Path]:
        return sorted(self.eval_dir.glob("*.json")) if self.eval_dir.is_dir() else []

    # --- the lock ---------------------------------------------------------------------------------
    def lock(self, command: str) -> "RunDir":
        """Hold RUN_DIR/.lock until release() or exit; RunLocked (one line, with the holder's pid) if a live
        process holds it. Re-entrant within a process."""
        _acquire(self.path, command)
        return self

    def release(self) -> None:
        _release(self.path)

    @contextlib.contextmanager
    def held(self, command: str) -> Iterator["RunDir"]:
        """The lock for one command's writes into an existing run (export, build-engine, bench): refused while
        another process writes the run (a half-trained run is not exported), released afterwards unless this
        process held it already."""
        mine = self.path not in _held
        self.lock(command)
        try:
            yield self
        finally:
            if mine:
                self.release()

    # --- JSON files -------------------------------------------------------------------------------
    def write_json(self, name: PathLike, obj: Any) -> Path:
        """Write `obj` to `name` (relative to the run, or one of the paths above)."""
        return atomic_write_json(self.path / name, obj)

    def read_json(self, name: PathLike, default: Any = None) -> Any:
        path = self.path / name
        if not path.exists():
            return default
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fix = ("delete it and re-run the command that wrote it with --resume: it is rebuilt from manifest.json and the checkpoints"
                   if path == self.summary_path else "delete it and re-run the command that wrote it")
            raise ArtifactError(f"{path} is not readable JSON ({exc})", fix) from None

    def write_config(self, config: Mapping[str, Any]) -> Path:
        return self.write_json("config.json", dict(config))

    def read_config(self) -> Optional[dict[str, Any]]:
        return self.read_json("config.json")

    def write_summary(self, summary: Union[RunSummary, Mapping[str, Any]]) -> Path:
        return self.write_json("summary.json", summary.to_dict() if isinstance(summary, RunSummary) else dict(summary))

    def read_summary(self) -> Optional[dict[str, Any]]:
        return self.read_json("summary.json")

    def load_summary(self) -> Optional[RunSummary]:
        """summary.json as a RunSummary (None if absent; ArtifactError if unreadable)."""
        data = self.read_summary()
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ArtifactError(f"{self.summary_path} is not a JSON object",
                                "delete it and re-run the command that wrote it with --resume: it is rebuilt from manifest.json")
        return RunSummary.from_dict(data)

    def summary_entries(self, rebuild: Optional[Callable[["RunDir", str, dict[str, Any]], Optional[StageEntry]]] = None) -> list[StageEntry]:
        """The entry of every finished stage, in pipeline order, from the manifest.

        A manifest written before stage entries were recorded in it falls back to summary.json's entry of
        that stage (if summary.json is readable), then to `rebuild(run, name, record)`."""
        records = self.manifest.stages if self.manifest_path.exists() or self._manifest is not None else {}
        legacy: Optional[RunSummary] = None
        if any("entry" not in r for r in records.values()):
            with contextlib.suppress(ArtifactError):
                legacy = self.load_summary()
        entries: list[StageEntry] = []
        for name, record in records.items():
            if record.get("status") != "done":
                continue
            entry = StageEntry.from_dict(record.get("entry")) if "entry" in record else None
            if entry is None and legacy is not None:
                entry = legacy.stage(name)
            if entry is None and rebuild is not None:
                entry = rebuild(self, name, record)
            if entry is not None:
                entries.append(entry)
        return entries

    def current_summary(self, header: Mapping[str, Any],
                        rebuild: Optional[Callable[["RunDir", str, dict[str, Any]], Optional[StageEntry]]] = None) -> RunSummary:
        """What summary.json should say: `header` (pipeline, arch, seed, data, anything else) and the finished
        stages' entries from the manifest. Independent of the summary.json on disk, so writing it rebuilds
        a lost or corrupt one."""
        summary = RunSummary.from_dict({**header, "stages": []})
        summary.stages = self.summary_entries(rebuild)
        return summary

    @property
    def manifest(self) -> "Manifest":
        if self._manifest is None:
            self._manifest = Manifest(self)
        return self._manifest

    def logger(self, stage: str, *, echo: Optional[Callable[[str], None]] = None) -> Callable[[str], None]:
        """A `log(line)` that appends a timestamped line to logs/<stage>.log (opened per line: survives kills)."""
        path = self.log_path(stage)

        def log(line: str) -> None:
            with writing(path):
                self.logs.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as f:
                    f.write(f"{now_iso()} {line}\n")
            if echo is not None:
                echo(line)

        return log


class Manifest:
    """manifest.json: environment, invocations and per-stage records. Every change is saved atomically."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        data = run.read_json("manifest.json")
        if data is None:
            data = {"format": MANIFEST_FORMAT, "created": now_iso(), "environment": environment(),
                    "invocations": [], "stages": {}}
        elif not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ArtifactError(f"{run.manifest_path} is not a gear-trt manifest", "use a run directory written by gear-trt")
        self.data: dict[str, Any] = data
        self._t0: dict[str, float] = {}  # start times of stages begun by this process

    def save(self) -> Path:
        return self.run.write_json("manifest.json", self.data)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.data["stages"]

    def record_invocation(self, command: str, argv: Iterable[str]) -> None:
        entry: dict[str, Any] = {"started": now_iso(), "command": command, "argv": list(argv), "pid": os.getpid()}
        env = environment()
        if self.data["invocations"] and env != self.data["environment"]:
            entry["environment"] = env  # resumed on another machine or software stack: keep both
        self.data["invocations"].append(entry)
        self.save()

    def close_abandoned_stages(self) -> list[str]:
        """Stages still "running" though this process (which holds the lock) did not start them: their
        process died before it could record the end. Marked interrupted, so the manifest tells the truth."""
        abandoned = [n for n, r in self.stages.items() if r.get("status") == "running" and n not in self._t0]
        for name in abandoned:
            self.stages[name].update(status="interrupted", error=ABANDONED)
        if abandoned:
            self.save()
        return abandoned

    def update_environment(self) -> None:
        """Re-describe the machine (call after torch is imported, to add the CUDA device)."""
        self.data["environment"].update(environment())
        self.save()

    def stage(self, name: str) -> Optional[dict[str, Any]]:
        return self.stages.get(name)

    def start_stage(self, name: str, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        record = {"status": "running", "params": _jsonable(params or {}), "started": now_iso(),
                  "artifacts": {}, "metrics": {}}
        self.stages[name] = record
        self._t0[name] = time.time()
        self.save()
        return record

    def finish_stage(self, name: str, artifacts: Union[Iterable[PathLike], Mapping[str, str], None] = None,
                     seconds: Optional[float] = None, metrics: Optional[Mapping[str, Any]] = None,
                     entry: Union[StageEntry, Mapping[str, Any], None] = None) -> dict[str, Any]:
        """Mark `name` done. `artifacts`: paths (hashed here) or {relative path: sha256}. `entry`: the
        stage's summary.json entry, kept here so the summary can always be rebuilt."""
        record = self.stages.setdefault(name, {"params": {}, "started": None})
        hashes = dict(artifacts) if isinstance(artifacts, Mapping) else {
            self.run.rel(p): sha256_file(self.run.path / self.run.rel(p)) for p in (artifacts or ())}
        t0 = self._t0.pop(name, None)
        record.update(status="done", finished=now_iso(), artifacts=hashes, metrics=_jsonable(metrics or {}),
                      seconds=seconds if seconds is not None else (time.time() - t0 if t0 else None))
        record.pop("error", None)
        if entry is not None:
            record["entry"] = _jsonable(entry.to_dict() if isinstance(entry, StageEntry) else entry)
        self.save()
        return record

    def fail_stage(self, name: str, error: str, status: str = "failed") -> None:
        record = self.stages.setdefault(name, {"params": {}, "started": None})
        t0 = self._t0.pop(name, None)
        record.update(status=status, error=error, finished=now_iso(), seconds=time.time() - t0 if t0 else None)
        self.save()

    def is_done(self, name: str, params: Optional[Mapping[str, Any]] = None) -> bool:
        """True if `name` finished with these params and every artifact is still there, unchanged."""
        record = self.stages.get(name)
        if not record or record.get("status") != "done":
            return False
        if params is not None and _jsonable(params) != record.get("params"):
            return False
        for rel, digest in record.get("artifacts", {}).items():
            path = self.run.path / rel
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True

    @contextlib.contextmanager
    def run_stage(self, name: str, params: Optional[Mapping[str, Any]] = None) -> Iterator[dict[str, Any]]:
        """`with manifest.run_stage("train", params) as out: ... out["artifacts"].append(p); out["metrics"][k] = v;
        out["entry"] = StageEntry(...)`.

        Records failure (or interruption) with its reason if the block raises, and finishes the stage otherwise.
        If the manifest itself cannot be written (a full disk), the error says so.
        """
        out: dict[str, Any] = {"artifacts": [], "metrics": {}, "entry": None}
        self.start_stage(name, params)
        t0 = time.perf_counter()
        try:
            yield out
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            reason = "interrupted" if interrupted else exc.message if isinstance(exc, GearError) else f"{type(exc).__name__}: {exc}"
            try:
                self.fail_stage(name, reason, status="interrupted" if interrupted else "failed")
            except StorageError as unsaved:
                raise StorageError(f"{reason}; {self.run.manifest_path.name} could not be updated either, so it still says "
                                   f"'{name}' is running (the next --resume marks it interrupted)", unsaved.fix) from None
            raise
        self.finish_stage(name, artifacts=out["artifacts"], metrics=out["metrics"], seconds=time.perf_counter() - t0,
                          entry=out["entry"])


def _jsonable(obj: Mapping[str, Any]) -> Any:
    """How `obj` reads back from manifest.json (tuples become lists...), so params compare equal."""
    return json.loads(json.dumps(dict(obj), default=json_default))


# --- the lock: an flock on RUN_DIR/.lock, held for the life of the process -----------------------------------
_held: dict[Path, int] = {}  # run path -> the open lock file's descriptor


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        _release(path)


def _raise_locked(path: Path, holder: Mapping[str, Any]) -> None:
    pid = holder.get("pid", "not yet recorded")
    what = f": `gear-trt {holder['command']}` since {holder.get('started')}" if holder.get("command") else ""
    where = f" on {holder['host']}" if holder.get("host") not in (None, socket.gethostname()) else ""
    raise RunLocked(f"{path} is being written by another gear-trt process (pid {pid}{where}{what})",
                    f"wait for it to finish, or stop it (kill {pid}) and re-run with --resume; or choose another --out")


def _refuse_if_locked(path: Path) -> None:
    """RunLocked if a live process holds `path`'s lock; changes nothing either way."""
    lock = path / LOCK_NAME
    if fcntl is None or path in _held or not lock.is_file():
        return
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        if not _try_lock(fd):
            _raise_locked(path, _holder(fd))
    finally:
        os.close(fd)  # drops the probe's lock


def _holder(fd: int) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        if isinstance(data, dict):
            return data
    return {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _try_lock(fd: int) -> bool:
    """True if this process now holds the lock. File systems without flock fall back to the recorded pid."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK / EOPNOTSUPP (some network file systems)
        pid = _holder(fd).get("pid")
        return pid == os.getpid() or not _pid_alive(pid)


def _acquire(path: Path, command: str) -> None:
    if fcntl is None or path in _held:
        return
    lock = path / LOCK_NAME
    with writing(lock):
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            if not _try_lock(fd):
                holder = _holder(fd)
                os.close(fd)
                _raise_locked(path, holder)
            try:  # the holder before us may have removed the file after we opened it: lock the one on disk
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _holder(fd)
        if previous.get("pid") not in (None, os.getpid()):
            warn(f"{lock} was left by process {previous['pid']} (`gear-trt {previous.get('command', '?')}`), which is no longer "
                 "running; taking the run over")
        record = json.dumps({"pid": os.getpid(), "command": command, "started": now_iso(), "host": socket.gethostname()})
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, record.encode("utf-8"))
    _held[path] = fd


def _release(path: Path) -> None:
    fd = _held.pop(path, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):  # removed while still held: no one can have locked this file meanwhile
        (path / LOCK_NAME).unlink()
    os.close(fd)

