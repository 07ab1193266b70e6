"""The GEARnn pipelines and their baselines, as a list of resumable stages over one run directory.

    gearnn2      backbone (clean, E1) -> grow (OSG, clean) -> grown (clean, E2) -> robust (ERA, Er)
    gearnn1      backbone (ERA, E1)   -> grow (OSG, ERA)   -> grown (ERA, E2)
    small-clean  small (a fixed net of the final size, clean, Eb)
    small-aug    small (a fixed net of the final size, ERA, Eb)

Each stage writes checkpoints/<stage>.pt (a deployable model), its clean and (optionally) robust
accuracy, size, time and energy into summary.json, and is skipped on a re-run once the manifest
says it is done with the same parameters and untouched artifacts. A killed training stage resumes
from its last epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Optional

import torch

from gear_trt.data import BatchLoader, ImageSet, load_source
from gear_trt.data.era import ERA, ERAConfig
from gear_trt.errors import BudgetError, ConfigError
from gear_trt.grow import Budget, GrowthConfig, grow, parse_budget
from gear_trt.grow.budget import growth_ratio_budget
from gear_trt.grow.growers import GROWERS
from gear_trt.grow.osg import BudgetBeyondOneShot, check_budget
from gear_trt.grow.candidates import default_new_counts
from gear_trt.models import backbone_spec, build_model, family, group_names, scaled_spec
from gear_trt.pipeline.rundir import RunDir, rebuild_entry, stage_entry
from gear_trt.records import RunSummary, StageEntry
from gear_trt.spec import ModelSpec
from gear_trt.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from gear_trt.train.jsd import era_loss
from gear_trt.train.loop import TrainConfig, accuracy_eval, evaluate_accuracy, resolve_device, train

PIPELINES = ("gearnn2", "gearnn1", "small-clean", "small-aug")
# The paper's growth ratios on CIFAR-10 (GEARNN.md), used when neither --budget nor --growth-ratio is given.
PAPER_GROWTH_RATIO = {"vgg19": 0.9, "mobilenet_v1": 1.8, "resnet18": 0.6}


@dataclasses.dataclass(frozen=True)
class Preset:
    backbone_epochs: int
    grown_epochs: int
    robust_epochs: int
    baseline_epochs: int
    robust_images: int  # test images in each stage's corruption sweep (0: no sweep)
    robust_severities: tuple[int, ...] = (1, 2, 3, 4, 5)


PRESETS = {
    # The paper's CIFAR-10 schedule: 40 / 1 / 40 / 40 epochs, baselines 160.
    "paper": Preset(40, 40, 40, 160, robust_images=10_000),
    # Minutes on a 2-core CPU with the built-in data; same proportions as the paper (baseline ~1.3x GEARnn-2).
    "quick": Preset(3, 3, 2, 11, robust_images=200, robust_severities=(1, 3, 5)),
}


@dataclasses.dataclass
class GrowOptions:
    data: str = "builtin"
    arch: str = "vgg19"
    pipeline: str = "gearnn2"
    preset: str = "quick"
    budget: Optional[str] = None
    growth_ratio: Optional[float] = None
    like: Optional[str] = None  # small-*: take the final spec from this run's summary (equal final size)
    shots: int = 1
    grower: str = "firefly"  # firefly | gradmax | random (gear_trt.grow.growers)
    new_ratio: float = 0.5
    growth_pass: float = 1.0  # fraction of an epoch the candidates train for (paper: one pass)
    seed: int = 0
    batch_size: int = 128
    lr: float = 0.1
    # Linear lr warmup per training stage (capped at half the stage). Without it, VGG-19 from scratch at
    # lr 0.1 stays at chance for some seeds (measured: seed 2 backbone 11% vs 33% after 3 epochs).
    warmup_epochs: float = 1.0
    device: str = "auto"
    era_width: int = 1
    era_depth: int = 3
    era_severity: int = 3
    jsd: bool = False
    robust_eval: str = "auto"  # auto (the preset's subset) | none | full | <N images>
    train_per_class: Optional[int] = None
    test_per_class: Optional[int] = None
    epochs_scale: float = 1.0  # multiply every stage's epochs (sensitivity studies, smoke tests)

    def validate(self) -> "GrowOptions":
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"unknown pipeline '{self.pipeline}'", f"choose one of {', '.join(PIPELINES)}")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset '{self.preset}'", f"choose one of {', '.join(PRESETS)}")
        family(self.arch)
        if self.budget and self.growth_ratio:
            raise ConfigError("--budget and --growth-ratio both given", "pass only one of them")
        if self.grower not in GROWERS:
            raise ConfigError(f"unknown grower '{self.grower}'", f"choose one of {', '.join(GROWERS)}")
        if not 0 < self.growth_pass <= 1:
            raise ConfigError(f"--growth-pass must be in (0, 1], got {self.growth_pass}", "use 1 for the paper's one pass")
        if self.warmup_epochs < 0:
            raise ConfigError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs}", "use e.g. 1 (0: no warmup)")
        if self.shots < 1:
            raise ConfigError(f"--shots must be >= 1, got {self.shots}")
        if self.like and not self.pipeline.startswith("small"):
            raise ConfigError("--like applies to the small-clean and small-aug baselines only", "drop --like")
        return self


class Context:
    """What every stage needs: the run, the data, the device, the meter, the summary being built."""

    def __init__(self, run: RunDir, opts: GrowOptions, echo: Callable[[str], None]) -> None:
        self.run, self.opts, self.echo = run, opts, echo
        self.preset = PRESETS[opts.preset]
        self.device = resolve_device(opts.device)
        torch.manual_seed(opts.seed)
        self.train_set = _limit(load_source(opts.data, "train"), opts.train_per_class, opts.seed)
        self.test_set = _limit(load_source(opts.data, "test"), opts.test_per_class, opts.seed)
        if self.test_set.classes != self.train_set.classes:
            raise ConfigError("train and test splits have different classes")
        self.classes = list(self.train_set.classes)
        self.test_loader = BatchLoader(self.test_set, 256, train=False, device=self.device)
        self.era = ERA(ERAConfig(width=opts.era_width, depth=opts.era_depth, severity=opts.era_severity, jsd=opts.jsd))
        self.meter = _energy_meter()
        # summary.json = this header + the finished stages' entries, always rebuilt from the manifest
        self.header: dict[str, Any] = dict(pipeline=opts.pipeline, arch=opts.arch, seed=opts.seed, data=opts.data, preset=opts.preset,
                                           energy_meter=self.meter.source if self.meter else "none")
        if self.meter is not None:
            run.manifest.data["energy_meter"] = self.meter.info()
            run.manifest.save()

    def loader(self, augmented: bool) -> BatchLoader:
        return BatchLoader(self.train_set, self.opts.batch_size, train=True, device=self.device, seed=self.opts.seed,
                           augment=self.era if augmented else None)

    def epochs(self, n: int) -> int:
        return max(1, round(n * self.opts.epochs_scale))

    def write_summary(self, totals: bool = False) -> RunSummary:
        summary = self.run.current_summary(self.header, rebuild=rebuild_entry)
        if totals:
            summary.extra["total_seconds"] = sum(s.seconds or 0 for s in summary.stages)
            summary.extra["total_energy_j"] = _sum_or_none(s.energy_j for s in summary.stages)
        self.run.write_summary(summary)
        return summary


def run_pipeline(run: RunDir, opts: GrowOptions, echo: Callable[[str], None] = print) -> dict[str, Any]:
    opts.validate()
    run.write_config(dataclasses.asdict(opts))
    ctx = Context(run, opts, echo)
    spec0 = backbone_spec(opts.arch, num_classes=len(ctx.classes), input_size=ctx.train_set.image_size)
    if opts.pipeline in ("gearnn2", "gearnn1"):
        augmented = opts.pipeline == "gearnn1"
        budget = _resolve_budget(opts, spec0)
        if opts.shots == 1:  # fail now, not after training the backbone
            _reachable_new_ratio(spec0, budget, opts, lambda line: None)
        elif budget.limit < budget.cost(spec0):
            raise BudgetError(f"budget {budget.describe()} is below the backbone itself ({budget.describe(budget.cost(spec0))})",
                              "give a larger budget or start from a smaller backbone")
        model, spec = _train_stage(ctx, "backbone", build_model(spec0), spec0, ctx.epochs(ctx.preset.backbone_epochs), augmented, "train")
        grown_epochs = ctx.epochs(ctx.preset.grown_epochs) + (ctx.epochs(ctx.preset.robust_epochs) if augmented else 0)
        for shot in range(1, opts.shots + 1):
            suffix = "" if opts.shots == 1 else str(shot)
            shot_budget = _shot_budget(budget, spec0, spec, shot, opts.shots)
            model, spec = _grow_stage(ctx, f"grow{suffix}", model, spec, shot_budget, augmented)
            epochs = max(1, grown_epochs // opts.shots) if opts.shots > 1 else grown_epochs
            model, spec = _train_stage(ctx, f"grown{suffix}", model, spec, epochs, augmented, "train")
        if opts.pipeline == "gearnn2":
            _train_stage(ctx, "robust", model, spec, ctx.epochs(ctx.preset.robust_epochs), True, "era")
    else:
        spec = _baseline_spec(opts, spec0)
        _train_stage(ctx, "small", build_model(spec), spec, ctx.epochs(ctx.preset.baseline_epochs), opts.pipeline == "small-aug", "baseline")
    if ctx.meter is not None:
        ctx.meter.close()
    return ctx.write_summary(totals=True).to_dict()


# -- stages --------------------------------------------------------------------------------------------
def _train_stage(ctx: Context, name: str, model: torch.nn.Module, spec: ModelSpec, epochs: int, augmented: bool, kind: str):
    opts = ctx.opts
    cfg = TrainConfig(epochs=epochs, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed, device=opts.device,
                      warmup_epochs=min(opts.warmup_epochs, epochs / 2))
    params = {"spec": spec.to_dict(), "train": cfg.to_dict(), "augmented": augmented, "era": dataclasses.asdict(ctx.era.config) if augmented else None}
    ckpt = ctx.run.checkpoint(name)
    if ctx.run.manifest.is_done(name, params):
        ctx.echo(f"{name}: done already, skipping")
        model, spec, _ = load_model(ckpt, map_location=ctx.device)
        return model, spec
    log = ctx.run.logger(name)
    loss_fn = _jsd_loss if augmented and opts.jsd else None
    with ctx.run.manifest.run_stage(name, params) as out:
        t0 = time.perf_counter()
        energy = _start(ctx)
        result = train(model, ctx.loader(augmented), cfg, ckpt_path=ckpt, spec=spec, classes=ctx.classes, stage=name,
                       eval_fn=accuracy_eval(ctx.test_loader), loss_fn=loss_fn, log=log)
        seconds, energy_j = time.perf_counter() - t0, _stop(energy)
        # a resumed stage counts the time of its earlier epochs too
        seconds = sum(r.get("seconds", 0) for r in result.history) or seconds
        entry = _entry(ctx, name, result.model, spec, kind, epochs, seconds, energy_j, augmented=augmented)
        out["artifacts"].append(ckpt)
        out["metrics"].update(clean_acc=entry.clean_acc, robust_acc=entry.robust_acc)
        out["entry"] = entry
    ctx.write_summary()
    ctx.echo(_line(entry))
    return result.model, spec


def _grow_stage(ctx: Context, name: str, model: torch.nn.Module, spec: ModelSpec, budget: Budget, augmented: bool):
    opts = ctx.opts
    params = {"from": spec.to_dict(), "budget": dataclasses.asdict(budget), "new_ratio": opts.new_ratio, "augmented": augmented,
              "growth_pass": opts.growth_pass, "grower": opts.grower}
    ckpt = ctx.run.checkpoint(name)
    if ctx.run.manifest.is_done(name, params):
        ctx.echo(f"{name}: done already, skipping")
        grown, grown_spec, _ = load_model(ckpt, map_location=ctx.device)
        return grown, grown_spec
    loader = ctx.loader(augmented)
    loader.set_epoch(10_000)  # its own shuffle, distinct from every training epoch
    config = GrowthConfig(grower=opts.grower, new_ratio=_reachable_new_ratio(spec, budget, opts, ctx.echo), seed=opts.seed,
                          max_batches=max(1, math.ceil(opts.growth_pass * len(loader))))
    with ctx.run.manifest.run_stage(name, params) as out:
        energy = _start(ctx)
        bar = _progress(name)
        result = grow(model.to(ctx.device), spec, lambda: _FirstView(loader), budget, config, progress=bar)
        energy_j = _stop(energy)
        grown = build_model(result.spec).to(ctx.device)
        grown.load_state_dict(result.state_dict)
        save_checkpoint(ckpt, {"spec": result.spec.to_dict(), "model": grown.state_dict(), "classes": ctx.classes, "stage": name,
                               "epoch": 1, "epochs": 1, "complete": True, "metrics": {}, "growth": {"widths_before": result.widths_before, "widths_after": result.widths_after}})
        growth = result.to_json(group_names(spec))
        growth["new_ratio"] = config.new_ratio
        shots = (ctx.run.read_json(ctx.run.growth_path) or {}).get("shots", []) if name != "grow" else []
        growth["shots"] = [s for s in shots if s.get("name") != name] + [{"name": name, **{k: growth[k] for k in ("widths_before", "widths_after", "budget", "seconds")}}]
        if len(growth["shots"]) > 1:
            growth["widths_before"] = growth["shots"][0]["widths_before"]
        ctx.run.write_json(ctx.run.growth_path, growth)
        entry = _entry(ctx, name, grown, result.spec, "grow", 1, result.seconds, energy_j, augmented=augmented,
                       budget=budget.describe(), budget_cost=result.cost_after)
        out["artifacts"] += [ckpt, ctx.run.growth_path]
        out["metrics"].update(clean_acc=entry.clean_acc, widths=list(result.spec.widths))
        out["entry"] = entry
    ctx.write_summary()
    ctx.echo(_line(entry))
    return grown, result.spec


# -- helpers ---------------------------------------------------------------------------------------------
def _entry(ctx: Context, name: str, model: torch.nn.Module, spec: ModelSpec, kind: str, epochs: int,
           seconds: float, energy_j: Optional[float], **more: Any) -> StageEntry:
    clean = evaluate_accuracy(model, ctx.test_loader)
    robust = _robust_eval(ctx, model, name)
    entry = stage_entry(name, checkpoint=ctx.run.rel(ctx.run.checkpoint(name)), spec=spec.to_dict(), kind=kind,
                        epochs=epochs, seconds=round(seconds, 3), clean_acc=clean, robust_acc=robust, energy_j=energy_j, **more)
    return entry


def _robust_eval(ctx: Context, model: torch.nn.Module, name: str) -> Optional[float]:
    """Mean accuracy over the 15 corruptions on a test subset (the preset's size, or --robust-eval)."""
    mode = ctx.opts.robust_eval
    n = ctx.preset.robust_images if mode == "auto" else 0 if mode == "none" else len(ctx.test_set) if mode == "full" else int(mode)
    if n <= 0:
        return None
    try:
        from gear_trt.corruptions.sweep import sweep
    except ImportError:
        return None
    from gear_trt.data import normalize

    subset = ctx.test_set.per_class(math.ceil(n / len(ctx.classes)), seed=ctx.opts.seed) if n < len(ctx.test_set) else ctx.test_set
    model.eval()

    @torch.no_grad()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return model(normalize(images.to(ctx.device)))

    results = sweep(predict, subset.images, subset.labels, preset="cifar" if ctx.train_set.image_size <= 32 else "tinyimagenet",
                    severities=ctx.preset.robust_severities, seed=ctx.opts.seed, batch_size=256)
    ctx.run.write_json(ctx.run.eval_path(name), {"model": name, "precision": "fp32", "backend": "torch", "images": len(subset), **results.to_dict()})
    return float(results.mean_corruption_acc)


def _resolve_budget(opts: GrowOptions, spec0: ModelSpec) -> Budget:
    if opts.budget:
        return parse_budget(opts.budget)
    return growth_ratio_budget(spec0, opts.growth_ratio if opts.growth_ratio is not None else PAPER_GROWTH_RATIO[opts.arch])


def _shot_budget(budget: Budget, spec0: ModelSpec, spec: ModelSpec, shot: int, shots: int) -> Budget:
    """Multi-shot: the k-th of N shots grows to cost0 + k/N of the way to the final budget."""
    if shots == 1:
        return budget
    start = budget.cost(spec0)
    return dataclasses.replace(budget, limit=start + (budget.limit - start) * shot / shots)


def _reachable_new_ratio(spec: ModelSpec, budget: Budget, opts: GrowOptions, echo: Callable[[str], None]) -> float:
    """Raise the new-neuron ratio (recorded in growth.json, said on the console) if one shot cannot reach the budget
    (growers without splits need more new candidates for the same budget)."""
    splits = GrowthConfig(grower=opts.grower).splits
    ratio = opts.new_ratio
    while True:
        try:
            check_budget(spec, budget, default_new_counts(spec, ratio), splits)
            break
        except BudgetBeyondOneShot:
            if ratio >= 4:
                raise
            ratio += 0.5
    if ratio != opts.new_ratio:
        echo(f"growth: raising --new-ratio from {opts.new_ratio} to {ratio} so one shot can reach {budget.describe()}")
    return ratio


def _baseline_spec(opts: GrowOptions, spec0: ModelSpec) -> ModelSpec:
    """The fixed-size baseline: the grown spec of another run (--like), or the widest uniform scaling in budget."""
    if opts.like:
        other = RunDir.open(opts.like)
        for stage in reversed((other.load_summary() or RunSummary()).stages):
            if stage.kind in ("train", "era") and stage.name != "backbone" and stage.checkpoint:
                payload = load_checkpoint(other.path / stage.checkpoint)
                return ModelSpec.from_dict(payload["spec"])
        raise ConfigError(f"run {opts.like} has no grown stage to copy the size of", "pass a gearnn2/gearnn1 run directory")
    budget = _resolve_budget(opts, spec0)
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if budget.fits(scaled_spec(opts.arch, mid, spec0.num_classes, spec0.input_size)) else (lo, mid)
    return scaled_spec(opts.arch, lo, spec0.num_classes, spec0.input_size)


def _jsd_loss(model: torch.nn.Module, x: Any, y: torch.Tensor):
    logits = model(torch.cat(list(x)))
    clean, a1, a2 = logits.chunk(3)
    return era_loss(clean, a1, a2, y), clean


class _FirstView:
    """The loader's batches with only the first view of ERA's (clean, aug1, aug2); keeps len() so growth can stream."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return (((x[0] if isinstance(x, tuple) else x), y) for x, y in self.loader)


def _limit(ds: ImageSet, per_class: Optional[int], seed: int) -> ImageSet:
    return ds.per_class(per_class, seed=seed) if per_class else ds


def _energy_meter():
    try:
        from gear_trt.energy import auto_meter
    except ImportError:
        return None
    return auto_meter()


def _start(ctx: Context):
    if ctx.meter is None:
        return None
    ctx.meter.start()
    return ctx.meter


def _stop(meter) -> Optional[float]:
    if meter is None:
        return None
    return meter.stop().joules


def _sum_or_none(values) -> Optional[float]:
    vals = list(values)
    return None if not vals or any(v is None for v in vals) else float(sum(vals))


def _progress(name: str):
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(phase: str, i: int, n: int, loss: float) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=n, desc=f"{name} {phase}", unit="batch", leave=False)
        bar.update(1)
        if loss:
            bar.set_postfix(loss=f"{loss:.3f}")
        if i == n:
            bar.close()

    return update


def _line(e: StageEntry) -> str:
    robust = "n/a" if e.robust_acc is None else f"{100 * e.robust_acc:.1f}%"
    return f"{e.name:<9} params {e.params or 0:>9,}  clean {100 * (e.clean_acc or 0):.1f}%  robust {robust}  {e.seconds or 0:.1f}s"
