"""The records a run directory holds, as typed values shared by the commands that write them and the report.

    StageEntry      one stage of summary.json (grow and train write it, report and inspect read it)
    RunSummary      summary.json: the run's header and its StageEntry list
    CorruptionEval  eval/<model>[-<precision>].json: a corruption sweep (the pipeline or `gear-trt eval --json`)
    LatencyStats    latency percentiles at one batch size (bench)
    BenchRow        one row of bench.json (`gear-trt bench`)

`to_dict()` writes the JSON shape the files have always had; `from_dict()` reads any version of it,
old or hand-edited: a missing or ill-typed value becomes None (or empty), never an exception, so a
report of an old run still renders with "n/a" where a value is absent.

Stdlib only: the report, the CLI and the run directory import this without torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "fp8")


# --- tolerant readers: one place that decides what an ill-typed JSON value becomes -------------------------

def num(value: Any) -> Optional[float]:
    """A finite number, or None for anything else (missing, null, text, NaN, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def count(value: Any) -> Optional[int]:
    v = num(value)
    return None if v is None else int(v)


def text(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


def mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def severity_table(value: Any) -> dict[str, Optional[float]]:
    """{severity: accuracy} with string keys, every value a finite number or None."""
    return {str(k): num(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _mean(values: Any) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


# --- summary.json -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class StageEntry:
    """One stage of a run: its checkpoint, size, accuracies and cost. `extra`: what a stage adds (augmented,
    budget, train_acc, ...), written flat beside the fixed fields."""

    name: str
    checkpoint: Optional[str] = None
    params: Optional[int] = None
    param_bytes: dict[str, Optional[int]] = dataclasses.field(default_factory=dict)  # precision -> deployed bytes
    widths: list[int] = dataclasses.field(default_factory=list)
    clean_acc: Optional[float] = None
    robust_acc: Optional[float] = None
    seconds: Optional[float] = None
    energy_j: Optional[float] = None
    epochs: Optional[int] = None
    kind: Optional[str] = None  # train | grow | era | baseline
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        fixed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**fixed, **{k: v for k, v in self.extra.items() if k not in fixed}}

    @classmethod
    def from_dict(cls, data: Any) -> Optional["StageEntry"]:
        """None for something that is not an entry at all (not a JSON object)."""
        if not isinstance(data, Mapping):
            return None
        fixed = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        widths = data.get("widths")
        return cls(name=text(data.get("name")) or "", checkpoint=text(data.get("checkpoint")), params=count(data.get("params")),
                   param_bytes={str(k): count(v) for k, v in mapping(data.get("param_bytes")).items()},
                   widths=[int(w) for w in widths if num(w) is not None] if isinstance(widths, list) else [],
                   clean_acc=num(data.get("clean_acc")), robust_acc=num(data.get("robust_acc")), seconds=num(data.get("seconds")),
                   energy_j=num(data.get("energy_j")), epochs=count(data.get("epochs")), kind=text(data.get("kind")),
                   extra={str(k): v for k, v in data.items() if k not in fixed})


@dataclasses.dataclass
class RunSummary:
    """summary.json: what the run was (pipeline, arch, seed, data, and whatever else it recorded in `extra`:
    preset, energy meter, totals) and its stages in pipeline order."""

    pipeline: Optional[str] = None
    arch: Optional[str] = None
    seed: Optional[int] = None
    data: Optional[str] = None
    stages: list[StageEntry] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    HEADER = ("pipeline", "arch", "seed", "data")

    def to_dict(self) -> dict[str, Any]:
        head = {k: getattr(self, k) for k in self.HEADER}
        rest = {k: v for k, v in self.extra.items() if k not in head and k != "stages"}
        return {**head, **rest, "stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSummary":
        stages = data.get("stages")
        entries = [StageEntry.from_dict(s) for s in stages] if isinstance(stages, list) else []
        return cls(pipeline=text(data.get("pipeline")), arch=text(data.get("arch")), seed=count(data.get("seed")),
                   data=text(data.get("data")), stages=[e for e in entries if e is not None],
                   extra={str(k): v for k, v in data.items() if k not in cls.HEADER and k != "stages"})

    def stage(self, name: str) -> Optional[StageEntry]:
        return next((s for s in self.stages if s.name == name), None)

    def rank(self, name: Optional[str]) -> int:
        """Position of stage `name` in the pipeline (unknown names after every stage)."""
        names = [s.name for s in self.stages]
        return names.index(name) if name in names else len(names)


# --- eval/*.json ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CorruptionEval:
    """A corruption sweep of one model at one precision on one backend.

    Two files carry one: the pipeline's eval/<stage>.json (the sweep at the top level, with model,
    precision, backend) and `gear-trt eval --json` (the sweep under "corruptions"; the model is then named
    by the file, eval/<stage>-<precision>.json)."""

    file: str  # the file's name, e.g. "era-int8.json"
    model: str
    precision: str
    backend: Optional[str]
    acc: dict[str, dict[str, Optional[float]]]  # corruption -> severity -> accuracy (the benchmark set)
    extras: dict[str, dict[str, Optional[float]]] = dataclasses.field(default_factory=dict)  # not in the mean
    clean_acc: Optional[float] = None
    recorded_mean: Optional[float] = None  # mean_corruption_acc as written
    images: Optional[int] = None

    @classmethod
    def from_dict(cls, data: Any, file: str) -> Optional["CorruptionEval"]:
        """None when the file holds no per-corruption 'acc' table."""
        if not isinstance(data, Mapping):
            return None
        sweep: Mapping[str, Any] = data
        if not isinstance(data.get("acc"), Mapping):
            nested = data.get("corruptions")
            if not (isinstance(nested, Mapping) and isinstance(nested.get("acc"), Mapping)):
                return None
            sweep = {**nested, "model": None, "precision": data.get("precision"), "backend": data.get("backend")}
        stem = file[: -len(".json")] if file.endswith(".json") else file
        model, _, suffix = stem.rpartition("-")
        guessed = suffix if suffix in PRECISION_ORDER else None
        return cls(file=file, model=text(sweep.get("model")) or (model if guessed else stem),
                   precision=text(sweep.get("precision")) or guessed or "fp32", backend=text(sweep.get("backend")),
                   acc={str(c): severity_table(t) for c, t in sweep["acc"].items()},
                   extras={str(c): severity_table(t) for c, t in mapping(sweep.get("extras")).items()},
                   clean_acc=num(sweep.get("clean_acc")), recorded_mean=num(sweep.get("mean_corruption_acc")),
                   images=count(sweep.get("images", sweep.get("n_images"))))

    @property
    def mean_corruption_acc(self) -> Optional[float]:
        """As recorded, else the mean over the benchmark set's corruptions x severities."""
        if self.recorded_mean is not None:
            return self.recorded_mean
        return _mean(v for t in self.acc.values() for v in t.values())


# --- bench.json -----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LatencyStats:
    batch: int
    iterations: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float

    @property
    def throughput(self) -> float:
        """Images per second at this batch size (from the mean call time)."""
        return self.batch * 1e3 / self.mean_ms if self.mean_ms > 0 and self.batch > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "throughput_ips": self.throughput}

    @classmethod
    def from_dict(cls, data: Any) -> Optional["LatencyStats"]:
        """None without a JSON object; a missing time reads as NaN (shown as n/a), and so does the
        throughput, which is computed from the batch and the mean as when it was written."""
        if not isinstance(data, Mapping):
            return None
        ms = {k: v if (v := num(data.get(k))) is not None else math.nan for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms")}
        return cls(batch=count(data.get("batch")) or 0, iterations=count(data.get("iterations")) or 0,
                   warmup=count(data.get("warmup")) or 0, **ms)


@dataclasses.dataclass
class BenchRow:
    model: str
    precision: str
    backend: str
    artifact: str
    size_bytes: Optional[int] = None
    clean_acc: Optional[float] = None
    corruption_acc: Optional[float] = None
    latency: Optional[LatencyStats] = None  # batch 1
    throughput: Optional[LatencyStats] = None  # a larger batch
    joules_per_image: Optional[float] = None  # at the throughput batch; None without an energy meter
    status: str = "ok"
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latency"] = self.latency.to_dict() if self.latency else None
        d["throughput"] = self.throughput.to_dict() if self.throughput else None
        return d

    @classmethod
    def from_dict(cls, data: Any) -> Optional["BenchRow"]:
        if not isinstance(data, Mapping):
            return None
        return cls(model=text(data.get("model")) or "", precision=text(data.get("precision")) or "",
                   backend=text(data.get("backend")) or "", artifact=text(data.get("artifact")) or "",
                   size_bytes=count(data.get("size_bytes")), clean_acc=num(data.get("clean_acc")),
                   corruption_acc=num(data.get("corruption_acc")), latency=LatencyStats.from_dict(data.get("latency")),
                   throughput=LatencyStats.from_dict(data.get("throughput")), joules_per_image=num(data.get("joules_per_image")),
                   status=text(data.get("status")) or "ok", details=mapping(data.get("details")))


# --- per-epoch curves ----------------------------------------------------------------------------------------
CURVE_KEYS = ("clean_acc", "robust_probe_acc")


def run_curve(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's accuracy against cumulative training time, from its summary.json alone:
    [{stage, epoch, seconds (cumulative training, evaluation excluded), clean_acc, robust_probe_acc}]. A training
    stage contributes its per-epoch `curve` (the probe's figures), a growth stage (or a run recorded before
    curves) one point at its end."""
    points: list[dict[str, Any]] = []
    elapsed = 0.0
    stages = summary.get("stages")
    for stage in stages if isinstance(stages, list) else []:
        curve = stage.get("curve")
        if curve:
            for p in curve:
                points.append({"stage": stage["name"], "epoch": p.get("epoch"), "seconds": elapsed + p["seconds"],
                               **{k: p.get(k) for k in CURVE_KEYS}})
        else:
            points.append({"stage": stage["name"], "epoch": None, "seconds": elapsed + (stage.get("seconds") or 0.0),
                           "clean_acc": stage.get("probe_clean_acc", stage.get("clean_acc")),
                           "robust_probe_acc": stage.get("robust_probe_acc")})
        elapsed += stage.get("seconds") or 0.0
    return points
