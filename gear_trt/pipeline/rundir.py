"""The run directory: where every command writes, and the manifest that makes re-runs resumable.

    RUN_DIR/
      config.json     the resolved options of the run (every default filled in)
      manifest.json   environment versions, each invocation, each stage's status, parameters,
                      timings, metrics and the sha256 of every artifact it wrote
      summary.json    the run's results, one entry per stage (the report reads it)
      checkpoints/    <stage>.pt
      logs/           <stage>.log (one line per epoch or event, appended)

Where a run goes when no --out is given: $GEAR_TRT_HOME/runs/<command>-<YYYYmmdd-HHMMSS>, with
GEAR_TRT_HOME defaulting to $XDG_DATA_HOME/gear-trt (~/.local/share/gear-trt). Nothing lands in
the working directory unless --out points there. Every file is written atomically.

Stdlib only at import time: the CLI can build a RunDir before torch loads.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from gear_trt import __version__
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.io import atomic_write_json, sha256_file

PathLike = Union[str, "os.PathLike[str]"]
MANIFEST_FORMAT = "gear-trt-manifest/1"
HOME_ENV = "GEAR_TRT_HOME"
# Packages whose versions decide what a run computes (looked up without importing them).
VERSIONED = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pillow", "tqdm")


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


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
    """A run directory. `RunDir(path)` only names it; `create`/`open` check it and make the folders."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path).expanduser().resolve()
        self._manifest: Optional[Manifest] = None

    @classmethod
    def create(cls, path: Optional[PathLike], command: str, *, resume: bool = False,
               argv: Optional[list[str]] = None) -> "RunDir":
        """The run directory of a command invocation.

        path None: a new directory under gear_home() (resume then needs an explicit path).
        Without resume the directory must be new or empty, so no run is overwritten by accident.
        """
        if path is None:
            if resume:
                raise ConfigError("--resume needs the run directory to continue", "pass --out RUN_DIR of the interrupted run")
            path = default_run_dir(command)
        run = cls(path)
        if resume:
            if not run.path.is_dir():
                raise ArtifactError(f"run directory {run.path} does not exist, so there is nothing to resume",
                                    "check --out, or drop --resume to start a new run")
        elif run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
            raise ConfigError(f"--out {run.path} already exists and is not empty",
                              "pass --resume to continue that run, or choose a new --out directory")
        run.ensure()
        run.manifest.record_invocation(command, argv if argv is not None else sys.argv[1:])
        return run

    @classmethod
    def open(cls, path: PathLike) -> "RunDir":
        """An existing run directory (for inspect, report, eval): it must hold a manifest or a summary."""
        run = cls(path)
        if not run.path.is_dir():
            raise ArtifactError(f"run directory {run.path} does not exist", "pass a directory written by a gear-trt command")
        if not (run.manifest_path.exists() or run.summary_path.exists()):
            raise ArtifactError(f"{run.path} is not a gear-trt run directory (no manifest.json or summary.json)",
                                "pass a directory written by a gear-trt command")
        return run

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- layout -----------------------------------------------------------------------------------
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

    def ensure(self) -> "RunDir":
        for d in (self.path, self.checkpoints, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def checkpoint(self, stage: str) -> Path:
        return self.checkpoints / f"{stage}.pt"

    def rel(self, path: PathLike) -> str:
        """`path` relative to the run directory, with '/' separators (how manifests and summaries name files)."""
        p = Path(path)
        p = p if p.is_absolute() else self.path / p
        try:
            return p.resolve().relative_to(self.path).as_posix()
        except ValueError:
            return str(p)

    # --- JSON files -------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def read_json(self, name: str, default: Any = None) -> Any:
        path = self.path / name
        if not path.exists():
            return default
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is not readable JSON ({exc})", "delete it and re-run the command that wrote it") from None

    def write_config(self, config: Mapping[str, Any]) -> Path:
        return self.write_json("config.json", dict(config))

    def read_config(self) -> Optional[dict[str, Any]]:
        return self.read_json("config.json")

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        return self.write_json("summary.json", dict(summary))

    def read_summary(self) -> Optional[dict[str, Any]]:
        return self.read_json("summary.json")

    @property
    def manifest(self) -> "Manifest":
        if self._manifest is None:
            self._manifest = Manifest(self)
        return self._manifest

    def logger(self, stage: str, *, echo: Optional[Callable[[str], None]] = None) -> Callable[[str], None]:
        """A `log(line)` that appends a timestamped line to logs/<stage>.log (opened per line: survives kills)."""
        path = self.logs / f"{stage}.log"

        def log(line: str) -> None:
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
                     seconds: Optional[float] = None, metrics: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Mark `name` done. `artifacts`: paths (hashed here) or {relative path: sha256}."""
        record = self.stages.setdefault(name, {"params": {}, "started": None})
        hashes = dict(artifacts) if isinstance(artifacts, Mapping) else {
            self.run.rel(p): sha256_file(self.run.path / self.run.rel(p)) for p in (artifacts or ())}
        t0 = self._t0.pop(name, None)
        record.update(status="done", finished=now_iso(), artifacts=hashes, metrics=_jsonable(metrics or {}),
                      seconds=seconds if seconds is not None else (time.time() - t0 if t0 else None))
        record.pop("error", None)
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
        """`with manifest.run_stage("train", params) as out: ... out["artifacts"].append(p); out["metrics"][k] = v`.

        Records failure (or interruption) if the block raises, and finishes the stage otherwise.
        """
        out: dict[str, Any] = {"artifacts": [], "metrics": {}}
        self.start_stage(name, params)
        t0 = time.perf_counter()
        try:
            yield out
        except KeyboardInterrupt:
            self.fail_stage(name, "interrupted", status="interrupted")
            raise
        except BaseException as exc:
            self.fail_stage(name, f"{type(exc).__name__}: {exc}")
            raise
        self.finish_stage(name, artifacts=out["artifacts"], metrics=out["metrics"], seconds=time.perf_counter() - t0)


def _jsonable(obj: Mapping[str, Any]) -> Any:
    """How `obj` reads back from manifest.json (tuples become lists...), so params compare equal."""
    return json.loads(json.dumps(dict(obj), default=str))


def stage_entry(name: str, *, checkpoint: str, spec: Mapping[str, Any], kind: str, epochs: int,
                seconds: Optional[float], clean_acc: Optional[float], robust_acc: Optional[float] = None,
                energy_j: Optional[float] = None, **more: Any) -> dict[str, Any]:
    """One summary.json stage entry (the schema in the brief: params, param_bytes, widths, accuracies...)."""
    from gear_trt.grow.budget import deployed_bytes  # imports torch: only when a summary is written
    from gear_trt.models import count_params
    from gear_trt.spec import ModelSpec

    model_spec = ModelSpec.from_dict(spec)
    params = count_params(model_spec)
    return {"name": name, "checkpoint": checkpoint, "params": params, "param_bytes": deployed_bytes(model_spec),
            "widths": list(model_spec.widths), "clean_acc": clean_acc, "robust_acc": robust_acc,
            "seconds": seconds, "energy_j": energy_j, "epochs": epochs, "kind": kind, **more}
