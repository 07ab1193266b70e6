"""A sweep's SPEC: `gear-trt grow`'s options as a grid, checked in full before anything runs.

A SPEC is a small JSON or YAML mapping whose keys are grow's option names with underscores
(`pipeline`, `arch`, `seed`, `growth_ratio`, `budget`, `preset`, `data`, `train_per_class`, ...).
A list is a grid axis, a scalar is shared by every trial. Three more keys belong to the sweep:

    resources_per_trial   what Ray gives each trial, e.g. {cpu: 2, gpu: 0.5} (default: 1 CPU, and 1 GPU
                          when the cluster has GPUs); torch in a trial uses as many threads as it has CPUs
    grids                 a list of grids run together, each merged over the top-level keys; points that
                          come out identical run once (so a sensitivity grid can share the comparison's runs)
    deploy_cost           true: once trained, each trial's final model is exported to int8 ONNX and timed in
                          onnxruntime (batch 1, one thread), one trial after another in the sweep's own process
                          (gear_trt.pipeline.deploy_cost); not in the training time. Default false

`like` (the small-* baselines' "copy the final size of this run") may name a pipeline instead of a
run directory: `like: gearnn2` makes every small-* trial copy the gearnn2 trial of the same grid
point, which then runs first. `like` applies to the small-* trials only.

Every key and value is checked with grow's own argument parser, then each point with
GrowOptions.validate, so a SPEC accepts exactly what the command line accepts. Trials are named by
their axes (`pipeline=gearnn2,seed=0`) and each is an ordinary run directory DIR/<name>: a re-run of
the same sweep finds them again.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from gear_trt.errors import ArtifactError, ConfigError, GearError
from gear_trt.rundir import RunDir

PLAN_FORMAT = "gear-trt-sweep/1"
PLAN_FILE = "sweep.json"
SWEEP_KEYS = ("grids", "resources_per_trial", "deploy_cost")
# grow options a SPEC cannot set, and why
NOT_IN_SPEC = {"out": "the sweep names each trial's run directory itself (DIR/<trial>)",
               "resume": "a sweep resumes by running the same command again"}
SMALL = ("small-clean", "small-aug")


@dataclasses.dataclass(frozen=True)
class Trial:
    """One grid point: its name, run directory and resolved grow options (what config.json records)."""

    name: str
    path: Path
    options: dict[str, Any]
    axes: dict[str, Any]  # the values that name it
    after: Optional[str] = None  # a trial that must finish first (small-* copying its size with `like`)

    def argv(self) -> list[str]:
        """The `gear-trt grow` arguments that make this run (recorded in its manifest)."""
        from gear_trt.pipeline.options import GrowOptions

        parser = grow_parser()
        defaults = {f.name: f.default for f in dataclasses.fields(GrowOptions)}
        args = [_flag(parser, k, v) for k, v in self.options.items() if v != defaults.get(k) and v is not None]
        return [a for pair in args for a in pair] + ["--out", str(self.path)]

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)

    @property
    def log(self) -> Path:
        """logs/trial.log: what the sweep said about each attempt at this trial (and its errors)."""
        return self.run.log_path("trial")

    def finished(self) -> bool:
        """True if the run directory holds a complete run of exactly these options."""
        run = self.run
        try:
            config = run.read_config()
            summary = run.read_summary() or {}
            stages = run.manifest.stages if run.manifest_path.is_file() else {}
        except ArtifactError:
            return False
        return (config == _jsonable(self.options) and "total_seconds" in summary and bool(stages)
                and all(s.get("status") == "done" for s in stages.values()))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "axes": self.axes, "after": self.after, "options": self.options}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Trial":
        return cls(d["name"], Path(d["path"]), dict(d["options"]), dict(d["axes"]), d.get("after"))


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every trial of a sweep, in order, with the resources each asks for."""

    out: Path
    trials: list[Trial]
    resources: Optional[dict[str, float]]  # resources_per_trial, None: the runner's default
    spec: dict[str, Any]
    deploy_cost: bool = False  # measure each finished trial's int8 size and onnxruntime latency

    def phases(self) -> list[list[Trial]]:
        """Trials that can start now first, then those copying the size (`like: <pipeline>`) of a sibling that
        has not finished yet. A trial whose sibling is already done (a resumed sweep) starts with the first
        phase, so no core idles while the last of the first phase trains."""
        done = {t.name for t in self.trials if t.after is None and t.finished()}
        first = [t for t in self.trials if t.after is None or t.after in done]
        second = [t for t in self.trials if t not in first]
        return [p for p in (first, second) if p]

    def to_json(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "spec": self.spec, "resources_per_trial": self.resources,
                "trials": [t.to_json() for t in self.trials]}

    def save(self) -> Path:
        from gear_trt.io import atomic_write_json

        return atomic_write_json(self.out / PLAN_FILE, self.to_json())

    @classmethod
    def load(cls, out: Path) -> "Plan":
        path = Path(out) / PLAN_FILE
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ArtifactError(f"{out} is not a gear-trt sweep directory (no {PLAN_FILE})", "pass the --out DIR of a sweep")
        return cls(Path(out), [Trial.from_json(t) for t in data["trials"]], data.get("resources_per_trial"), data["spec"],
                   _deploy_cost(data["spec"].get("deploy_cost")))


# -- reading and checking a SPEC ---------------------------------------------------------------------------
def load_spec(path: str | Path) -> dict[str, Any]:
    """The SPEC file as a mapping (JSON, or YAML with PyYAML)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"SPEC {path} not found", "pass a .json or .yaml file of grow options (see docs/paper_comparison.md)")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"reading the YAML SPEC {path} needs PyYAML", "`pip install pyyaml` (it comes with gear-trt[sweep]), or write it as JSON") from None
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"SPEC {path} is not valid YAML ({' '.join(str(exc).split())})", "fix the file") from None
    elif path.suffix.lower() == ".json":
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"SPEC {path} is not valid JSON ({exc})", "fix the file") from None
    else:
        raise ConfigError(f"SPEC {path} is neither .json nor .yaml", "name it spec.json or spec.yaml")
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"SPEC {path} is not a mapping of grow options", "write e.g. {\"pipeline\": \"gearnn2\", \"seed\": [0, 1]}")
    return spec


def plan_sweep(spec: Mapping[str, Any], out: str | Path, *, local: bool = True) -> Plan:
    """Check every key and value of `spec`, expand its grids and name its trials; create nothing.

    local: paths (data, like) must exist here; on a cluster (False) they need only exist on the nodes.
    """
    from gear_trt.pipeline.stages import PIPELINES, GrowOptions

    out = Path(out).expanduser().resolve()
    spec = dict(spec)
    resources = _resources(spec.get("resources_per_trial"))
    deploy_cost = _deploy_cost(spec.get("deploy_cost"))
    grids = _grids(spec)
    parser = grow_parser()
    actions = _options(parser)
    for grid in grids:
        for key, value in grid.items():
            _check_key(key, actions)
            for v in value if isinstance(value, list) else [value]:
                _check_value(parser, key, v)
            if isinstance(value, list) and not value:
                raise ConfigError(f"SPEC {key}: an empty list gives no trials", f"give {key} at least one value")
    axes = {k for g in grids for k, v in g.items() if isinstance(v, list)}

    points: list[dict[str, Any]] = []
    for grid in grids:
        keys = list(grid)
        for values in itertools.product(*[grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys]):
            point = _options_of(parser, dict(zip(keys, values)), sorted(axes), local)
            if point not in points:
                points.append(point)
    # names: the axes, and whatever else differs between points (not `like`, which follows from the pipeline)
    order = list(GrowOptions.__dataclass_fields__)
    name_keys = [k for k in order if k in axes or (k != "like" and len({_key(p[k]) for p in points}) > 1)]
    trials: list[Trial] = []
    for point in points:
        name = _name({k: point[k] for k in name_keys})
        clash = next((t for t in trials if t.name == name), None)
        if clash is not None:
            differ = [k for k in order if clash.options[k] != point[k]]
            raise ConfigError(f"two trials would share the run directory {name} (they differ in {', '.join(differ)})",
                              f"make {differ[0]} a list in SPEC so it names the trials")
        trials.append(Trial(name, out / name, point, {k: point[k] for k in name_keys}))
    trials = [_link_like(t, trials, out, PIPELINES, local) for t in trials]
    _check_out(out, trials)
    return Plan(out, trials, resources, spec, deploy_cost)


def grow_parser() -> argparse.ArgumentParser:
    """`gear-trt grow`'s own argument parser, raising ConfigError instead of exiting."""
    from gear_trt.pipeline.options import GrowOptions, add_options

    parser = _Parser(prog="gear-trt grow", add_help=False)
    add_options(parser, GrowOptions, "grow")  # what gear_trt.cli.grow adds: the sweep stays below the CLI
    return parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> its (first) option: `--jsd`, not the `--no-jsd` that shares its dest."""
    out: dict[str, argparse.Action] = {}
    for a in parser._actions:
        if a.dest not in NOT_IN_SPEC and a.option_strings:
            out.setdefault(a.dest, a)
    return out


def _check_key(key: str, actions: Mapping[str, argparse.Action]) -> None:
    if key in actions:
        return
    if key in NOT_IN_SPEC:
        raise ConfigError(f"SPEC key '{key}' is not for a sweep: {NOT_IN_SPEC[key]}", f"remove '{key}' (the sweep's --out is DIR)")
    if key in SWEEP_KEYS:
        raise ConfigError(f"SPEC key '{key}' belongs at the top level, not inside a grid", f"move '{key}' out of grids")
    known = sorted(k for k, a in actions.items() if a.help != argparse.SUPPRESS)
    close = difflib.get_close_matches(key.replace("-", "_"), list(actions) + list(SWEEP_KEYS), n=1)
    fix = f"did you mean '{close[0]}'?" if close else f"use grow's option names with underscores: {', '.join(known + list(SWEEP_KEYS))}"
    raise ConfigError(f"SPEC key '{key}' is not a gear-trt grow option", fix)


def _flag(parser: argparse.ArgumentParser, key: str, value: Any) -> list[str]:
    """`key: value` as grow's command-line arguments."""
    action = _options(parser)[key]
    flag = action.option_strings[-1]
    off = f"--no-{flag[2:]}"
    if isinstance(value, bool) and (action.nargs == 0 or action.nargs == "?"):  # a switch (--jsd / --no-nesterov), or --amp alone
        return [flag] if value else [off] if off in parser._option_string_actions else []
    if action.nargs == 0:
        raise ConfigError(f"SPEC {key}: {value!r} is not true or false", f"write {key}: true (grow's {flag}) or leave it out")
    if isinstance(value, (bool, dict, list)):
        raise ConfigError(f"SPEC {key}: {json.dumps(value)} is not {_kind(action)}",
                          f"give {key} {_kind(action)}, or a list of them for a grid axis")
    return [f"{flag}={value}"]


def _kind(action: argparse.Action) -> str:
    return "an integer" if action.type is int else "a number" if action.type is float else "a string"


def _check_value(parser: argparse.ArgumentParser, key: str, value: Any) -> None:
    if value is None:
        return
    try:
        parser.parse_args(_flag(parser, key, value))
    except ConfigError as exc:
        if exc.fix:
            raise
        flag = _options(parser)[key].option_strings[-1]
        detail = re.sub(r"^argument [^:]+: ", "", exc.message)
        raise ConfigError(f"SPEC {key}: {detail}", f"give {key} a value `gear-trt grow {flag}` accepts") from None


def _options_of(parser: argparse.ArgumentParser, point: Mapping[str, Any], axes: Iterable[str], local: bool) -> dict[str, Any]:
    """One grid point -> every GrowOptions field, through grow's parser and GrowOptions.validate."""
    from gear_trt.pipeline.options import GrowOptions, given

    argv = [a for k, v in point.items() if v is not None for a in _flag(parser, k, v)]
    where = "SPEC" + (f" ({', '.join(f'{k}={point[k]}' for k in axes if k in point)})" if axes else "")
    fix = "change the SPEC so that every grid point is a valid `gear-trt grow` command"
    try:
        ns = parser.parse_args(argv)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message.replace('argument ', '')}", exc.fix or fix) from None
    opts = GrowOptions.resolve(given(ns, GrowOptions))  # the defaults, and what the point sets
    if opts.pipeline not in SMALL:
        opts = dataclasses.replace(opts, like=None)  # `like` is for the small-* baselines only
    try:
        opts.validate()
        if opts.budget:
            from gear_trt.grow import parse_budget

            parse_budget(opts.budget)
        opts.data = _absolute_data(opts.data, local)
    except GearError as exc:
        raise type(exc)(f"{where}: {exc.message}", exc.fix or fix) from None
    return dataclasses.asdict(opts)


def _absolute_data(data: str, local: bool) -> str:
    """Trials run in other working directories (and machines): give them an absolute path."""
    if data == "builtin":
        return data
    prefix, _, root = data.partition(":") if data.split(":", 1)[0] in ("cifar10", "cifar100") else ("", "", data)
    path = str(Path(root).expanduser().resolve())
    resolved = f"{prefix}:{path}" if prefix else path
    if local:
        from gear_trt.data.sources import parse_source

        parse_source(resolved)  # DataError with the fix if it is missing
    return resolved


def _link_like(trial: Trial, trials: list[Trial], out: Path, pipelines: Iterable[str], local: bool) -> Trial:
    like = trial.options.get("like")
    if not like:
        return trial
    if like in pipelines:
        if like in SMALL:
            raise ConfigError(f"SPEC like: {like} names a baseline", "let like name a GEARnn pipeline (gearnn2 or gearnn1) or a run directory")
        want = {**trial.options, "pipeline": like, "like": None}
        sibling = next((t for t in trials if t.options == want), None)
        if sibling is None:
            raise ConfigError(f"trial {trial.name} copies the size of the {like} trial of its grid point, which the SPEC does not run",
                              f"add {like} to the SPEC's pipeline list (same grid point)")
        return dataclasses.replace(trial, options={**trial.options, "like": str(sibling.path)}, after=sibling.name)
    path = Path(like).expanduser().resolve()
    if local:
        RunDir.open(path)
    return dataclasses.replace(trial, options={**trial.options, "like": str(path)})


def _check_out(out: Path, trials: list[Trial]) -> None:
    """DIR is new, empty or this sweep's; an existing trial directory must have been made with its options."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / PLAN_FILE).is_file())):
        raise ConfigError(f"--out {out} exists and is not a sweep directory", "choose a new --out DIR (or the DIR of this sweep to resume it)")
    from gear_trt.pipeline.options import GrowOptions

    defaults = _jsonable(dataclasses.asdict(GrowOptions()))
    for t in trials:
        try:
            config = t.run.read_config()
        except ArtifactError:
            continue  # unreadable: the trial fails on its own with the run directory's message
        # an option the run's config.json lacks came in a later gear-trt: the run had its default behaviour
        config = config if config is None else {**defaults, **config}
        if config is not None and config != _jsonable(t.options):
            differ = [f"{k}: {config.get(k)!r} -> {v!r}" for k, v in _jsonable(t.options).items() if config.get(k) != v]
            raise ConfigError(f"{t.path} was run with other options ({'; '.join(differ)})",
                              "restore the SPEC, or sweep into a new --out DIR")


def _grids(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    shared = {k: v for k, v in spec.items() if k not in SWEEP_KEYS}
    if "grids" not in spec:
        return [shared]
    grids = spec["grids"]
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) and g for g in grids):
        raise ConfigError("SPEC grids must be a list of mappings of grow options", "write grids: [{pipeline: gearnn2, growth_ratio: [0.3, 0.6]}, ...]")
    return [{**shared, **g} for g in grids]


def _resources(value: Any) -> Optional[dict[str, float]]:
    if value is None:
        return None
    ok = isinstance(value, dict) and value and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for k, v in value.items())
    if not ok or value.get("cpu", 1) <= 0:
        raise ConfigError(f"SPEC resources_per_trial: {json.dumps(value)} is not a mapping of resource amounts",
                          "write e.g. resources_per_trial: {cpu: 1, gpu: 0.5} (cpu > 0)")
    return {k.lower(): float(v) for k, v in value.items()}


def _deploy_cost(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ConfigError(f"SPEC deploy_cost: {json.dumps(value)} is not true or false",
                      "write deploy_cost: true to export each trial's final model to int8 ONNX and time it, or leave it out")


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _name(axes: Mapping[str, Any]) -> str:
    """A directory name from the axis values: pipeline=gearnn2,seed=0 (paths by their last part)."""
    if not axes:
        return "run"
    parts = []
    for k, v in axes.items():
        text = "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        text = re.sub(r"[^A-Za-z0-9._+-]+", "_", text.rstrip("/").rsplit("/", 1)[-1])[:40]
        parts.append(f"{k}={text}")
    name = ",".join(parts)
    return name if len(name) <= 120 else f"{name[:100]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _jsonable(obj: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(dict(obj), default=str))
