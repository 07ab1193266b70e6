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
from typing import Any, Callable, Optional, Union

import torch

from gear_trt.artifacts.checkpoint import load_checkpoint, save_checkpoint
from gear_trt.choices import PIPELINES, PRESETS, Preset
from gear_trt.data import BatchLoader, ImageSet
from gear_trt.data.era import ERA, ERAConfig
from gear_trt.errors import ConfigError
from gear_trt.grow import Budget, GrowthConfig, grow, parse_budget
from gear_trt.grow.budget import growth_ratio_budget
from gear_trt.grow.osg import BudgetBelowBackbone, reachable_new_ratio
from gear_trt.models import backbone_spec, build_model, group_names, load_model, scaled_spec, width_multiplier_bracket
from gear_trt.pipeline.inputs import load_splits
from gear_trt.pipeline.options import GrowOptions, curve_images, parse_stage_epochs, robust_eval_images
from gear_trt.pipeline.rundir import RunDir, rebuild_entry, stage_entry
from gear_trt.records import RunSummary, StageEntry
from gear_trt.spec import ModelSpec
from gear_trt.train.jsd import era_views_loss
from gear_trt.train.loop import evaluate_accuracy, resolve_device, train
from gear_trt.train.new_neurons import added_entries

__all__ = ["GrowOptions", "PIPELINES", "PRESETS", "Plan", "Preset", "prepare", "run_pipeline"]

# The paper's growth ratios on CIFAR-10 (GEARNN.md), used when neither --budget nor --growth-ratio is given.
PAPER_GROWTH_RATIO = {"vgg19": 0.9, "mobilenet_v1": 1.8, "resnet18": 0.6}


@dataclasses.dataclass
class Plan:
    """A grow run checked against its data, before anything is written: what run_pipeline executes."""

    opts: GrowOptions
    train_set: ImageSet
    test_set: ImageSet
    spec0: ModelSpec  # the backbone at this data's classes and image size
    budget: Optional[Budget]  # growing pipelines: the final size
    small_spec: Optional[ModelSpec]  # baselines: the fixed model


def prepare(opts: GrowOptions, *, progress: bool = True) -> Plan:
    """Validate the options against the data: every user error a run can hit before training is raised here."""
    opts.validate()
    like = like_spec(opts.like) if opts.like else None
    if like is not None and opts.arch != like.family:  # (the command line follows the run when --arch is not given)
        raise ConfigError(f"--arch {opts.arch} differs from the family of the --like run ({like.family})",
                          f"leave --arch out or pass --arch {like.family}, or --like a {opts.arch} run")
    resolve_device(opts.device)
    train_set, test_set = load_splits(opts, progress=progress)
    spec0 = backbone_spec(opts.arch, num_classes=train_set.num_classes, input_size=train_set.image_size)
    budget = small = None
    if PIPELINES[opts.pipeline].grows:
        budget = _resolve_budget(opts, spec0)
        if opts.shots == 1:  # fail now, not after training the backbone
            _reachable_new_ratio(spec0, budget, opts, lambda line: None)
        elif budget.limit < budget.cost(spec0):
            raise BudgetBelowBackbone(f"budget {budget.describe()} is below the backbone itself ({budget.describe(budget.cost(spec0))})",
                                   "give a larger budget or start from a smaller backbone")
    else:
        small = _baseline_spec(opts, spec0, like)
    return Plan(opts, train_set, test_set, spec0, budget, small)


class Context:
    """What every stage needs: the run, the data, the device, the meter, the summary being built."""

    def __init__(self, run: RunDir, plan: Plan, echo: Callable[[str], None], quiet: bool = False) -> None:
        opts = plan.opts
        self.run, self.opts, self.echo, self.quiet = run, opts, echo, quiet
        self.preset = PRESETS[opts.preset]
        if opts.stage_epochs is not None:
            b, g, r, s = parse_stage_epochs(opts.stage_epochs)
            self.preset = dataclasses.replace(self.preset, backbone_epochs=b, grown_epochs=g, robust_epochs=r, baseline_epochs=s)
        self.device = resolve_device(opts.device)
        torch.manual_seed(opts.seed)
        self.train_set, self.test_set = plan.train_set, plan.test_set
        self.classes = list(self.train_set.classes)
        self.test_loader = BatchLoader(self.test_set, 256, train=False, device=self.device)
        self.era = ERA(ERAConfig(width=opts.era_width, depth=opts.era_depth, severity=opts.era_severity, jsd=opts.jsd))
        self.meter = _energy_meter()
        self._probe: Any = False  # the pre-corrupted test subset scored each epoch: built on first use (None: off)
        # summary.json = this header + the finished stages' entries, always rebuilt from the manifest
        self.header: dict[str, Any] = dict(pipeline=opts.pipeline, arch=opts.arch, seed=opts.seed, data=opts.data, preset=opts.preset,
                                           energy_meter=self.meter.source if self.meter else "none")
        if self.meter is not None:
            run.manifest.data["energy_meter"] = self.meter.info()
            run.manifest.save()

    def loader(self, augmented: bool) -> BatchLoader:
        return BatchLoader(self.train_set, self.opts.batch_size, train=True, device=self.device, seed=self.opts.seed,
                           augment=self.era if augmented else None)

    def probe(self) -> Any:
        """The run's CorruptedProbe (same images for every stage and every run of this seed), or None."""
        if self._probe is False:
            self._probe = _build_probe(self)
        return self._probe

    def evaluate_epoch(self, model: torch.nn.Module) -> dict[str, float]:
        """What every epoch records: clean and robust accuracy on the probe's images, else clean on the test set."""
        probe = self.probe()
        if probe is None:
            return {"test_acc": evaluate_accuracy(model, self.test_loader)}
        return {"probe_clean_acc": _probe_accuracy(self, model, probe, corrupted=False),
                "robust_probe_acc": _probe_accuracy(self, model, probe)}

    def epochs(self, n: int) -> int:
        """A stage's epochs under --epochs-scale: at least 1, unless the stage has none (it is skipped)."""
        return 0 if n == 0 else max(1, round(n * self.opts.epochs_scale))

    def write_summary(self, totals: bool = False) -> RunSummary:
        summary = self.run.current_summary(self.header, rebuild=rebuild_entry)
        if totals:
            summary.extra["total_seconds"] = sum(s.seconds or 0 for s in summary.stages)
            summary.extra["total_energy_j"] = _sum_or_none(s.energy_j for s in summary.stages)
        self.run.write_summary(summary)
        return summary


def run_pipeline(run: RunDir, plan: Union[Plan, GrowOptions], echo: Callable[[str], None] = print, *, quiet: bool = False) -> dict[str, Any]:
    """Run the pipeline of `plan` (or of options, prepared here) into `run`; returns the summary."""
    plan = plan if isinstance(plan, Plan) else prepare(plan, progress=not quiet)
    opts = plan.opts
    run.write_config(opts.to_dict())
    ctx = Context(run, plan, echo, quiet)
    spec0, kind = plan.spec0, PIPELINES[opts.pipeline]
    if kind.grows:
        assert plan.budget is not None
        budget, augmented = plan.budget, kind.augmented
        backbone_epochs = ctx.epochs(ctx.preset.backbone_epochs)
        grown_epochs = ctx.epochs(ctx.preset.grown_epochs) + (ctx.epochs(ctx.preset.robust_epochs) if augmented else 0)
        shot_epochs = (max(1, grown_epochs // opts.shots) if opts.shots > 1 and grown_epochs else grown_epochs)
        robust_epochs = ctx.epochs(ctx.preset.robust_epochs) if kind.robust_stage else 0
        spans = _Spans(opts.one_schedule, backbone_epochs + shot_epochs * opts.shots + robust_epochs)
        model, spec = _train_stage(ctx, "backbone", build_model(spec0), spec0, backbone_epochs, augmented, "train",
                                   span=spans.next(backbone_epochs))
        before: Optional[ModelSpec] = None  # the spec before the last growth, until a stage has trained after it
        for shot in range(1, opts.shots + 1):
            suffix = "" if opts.shots == 1 else str(shot)
            shot_budget = _shot_budget(budget, spec0, spec, shot, opts.shots)
            before = spec
            model, spec = _grow_stage(ctx, f"grow{suffix}", model, spec, shot_budget, augmented)
            if shot_epochs:
                model, spec = _train_stage(ctx, f"grown{suffix}", model, spec, shot_epochs, augmented, "train",
                                           lr_scale=opts.post_growth_lr, span=spans.next(shot_epochs), grown_from=before)
                before = None
        if robust_epochs:
            _train_stage(ctx, "robust", model, spec, robust_epochs, True, "era", lr_scale=opts.post_growth_lr,
                         span=spans.next(robust_epochs), grown_from=before)
    else:
        assert plan.small_spec is not None
        spec = plan.small_spec
        _train_stage(ctx, "small", build_model(spec), spec, ctx.epochs(ctx.preset.baseline_epochs), kind.augmented, "baseline")
    if ctx.meter is not None:
        ctx.meter.close()
    return ctx.write_summary(totals=True).to_dict()


# -- stages --------------------------------------------------------------------------------------------
def _train_stage(ctx: Context, name: str, model: torch.nn.Module, spec: ModelSpec, epochs: int, augmented: bool, kind: str,
                 lr_scale: float = 1.0, span: tuple[float, float] = (0.0, 1.0), grown_from: Optional[ModelSpec] = None):
    """One training stage; `grown_from`: the spec before the growth this stage is the first to train after."""
    opts = ctx.opts
    cfg = opts.train_config(epochs)
    cfg.lr *= lr_scale
    cfg.cosine_span = span
    if grown_from is not None:
        cfg.new_neuron_warmup = opts.new_neuron_warmup
    params = {"spec": spec.to_dict(), "train": cfg.to_dict(), "augmented": augmented, "era": dataclasses.asdict(ctx.era.config) if augmented else None}
    ckpt = ctx.run.checkpoint(name)
    if ctx.run.manifest.is_done(name, params):
        ctx.echo(f"{name}: done already, skipping")
        model, spec, _ = load_model(ckpt, map_location=ctx.device)
        return model, spec
    log = ctx.run.logger(name)
    loss_fn = era_views_loss if augmented and opts.jsd else None
    with ctx.run.manifest.run_stage(name, params) as out:
        t0 = time.perf_counter()
        energy = _start(ctx)
        new_neurons = added_entries(model, grown_from) if grown_from is not None and cfg.new_neuron_warmup else None  # only when it trains
        result = train(model, ctx.loader(augmented), cfg, ckpt_path=ckpt, spec=spec, classes=ctx.classes, stage=name,
                       eval_fn=ctx.evaluate_epoch, loss_fn=loss_fn, log=log, quiet=ctx.quiet, new_neurons=new_neurons)
        seconds, energy_j = time.perf_counter() - t0, _stop(energy)
        # a resumed stage counts the time of its earlier epochs too
        seconds = sum(r.get("seconds", 0) for r in result.history) or seconds
        last = result.history[-1] if result.history else {}
        probe = {k: last[k] for k in ("probe_clean_acc", "robust_probe_acc") if k in last}
        entry = _entry(ctx, name, result.model, spec, kind, epochs, seconds, energy_j, augmented=augmented,
                       curve=_curve(result.history), **probe)
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
        bar = None if ctx.quiet else _progress(name)
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
    probe = ctx.probe()
    if probe is not None and "robust_probe_acc" not in more:  # a growth stage's only point (training stages pass their last epoch's)
        more.update(probe_clean_acc=_probe_accuracy(ctx, model, probe, corrupted=False), robust_probe_acc=_probe_accuracy(ctx, model, probe))
    robust = _robust_eval(ctx, model, name)
    entry = stage_entry(name, checkpoint=ctx.run.rel(ctx.run.checkpoint(name)), spec=spec.to_dict(), kind=kind,
                        epochs=epochs, seconds=round(seconds, 3), clean_acc=clean, robust_acc=robust, energy_j=energy_j, **more)
    return entry


def _robust_eval(ctx: Context, model: torch.nn.Module, name: str) -> Optional[float]:
    """Mean accuracy over the 15 corruptions on a test subset (the preset's size, or --robust-eval)."""
    n = robust_eval_images(ctx.opts.robust_eval, ctx.preset.robust_images, len(ctx.test_set))
    if n <= 0:
        return None
    try:
        from gear_trt.corruptions.sweep import sweep
    except ImportError:
        return None
    subset = _test_subset(ctx, n)
    model.eval()
    results = sweep(_predictor(ctx, model), subset.images, subset.labels, preset=_corruption_preset(ctx),
                    severities=ctx.preset.robust_severities, seed=ctx.opts.seed, batch_size=256)
    ctx.run.write_json(ctx.run.eval_path(name), {"model": name, "precision": "fp32", "backend": "torch", "images": len(subset), **results.to_dict()})
    mean = results.mean_corruption_acc
    return None if mean is None else float(mean)


def _build_probe(ctx: Context) -> Any:
    n = min(curve_images(ctx.opts.curve_images, ctx.preset.curve_images, ctx.opts.robust_eval), len(ctx.test_set))
    if n <= 0:
        return None
    try:
        from gear_trt.corruptions.probe import corrupted_probe
    except ImportError:
        return None
    subset = _test_subset(ctx, n)
    return corrupted_probe(subset.images, subset.labels, severities=ctx.preset.robust_severities, seed=ctx.opts.seed,
                           preset=_corruption_preset(ctx))


def _test_subset(ctx: Context, n: int) -> ImageSet:
    """The class-balanced test images the corruption sweep and the probe score (all of them if n covers the set)."""
    return ctx.test_set.per_class(math.ceil(n / len(ctx.classes)), seed=ctx.opts.seed) if n < len(ctx.test_set) else ctx.test_set


def _corruption_preset(ctx: Context) -> str:
    return "cifar" if ctx.train_set.image_size <= 32 else "tinyimagenet"


def _predictor(ctx: Context, model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 NHWC images -> logits, without gradients (the corruption code's calling convention)."""
    from gear_trt.data import normalize

    @torch.no_grad()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return model(normalize(images.to(ctx.device)))

    return predict


def _probe_accuracy(ctx: Context, model: torch.nn.Module, probe: Any, *, corrupted: bool = True) -> float:
    from gear_trt.corruptions.probe import probe_accuracy

    was_training = model.training
    model.eval()
    try:
        return probe_accuracy(_predictor(ctx, model), probe, batch_size=256, corrupted=corrupted)
    finally:
        model.train(was_training)


def _curve(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch: training seconds so far in this stage (evaluation excluded), clean and robust accuracy
    (on the probe's images when there is a probe, else clean on the test set)."""
    out, seconds = [], 0.0
    for r in history:
        seconds += r.get("seconds", 0.0)
        out.append({"epoch": r.get("epoch"), "seconds": round(seconds, 3), "clean_acc": r.get("probe_clean_acc", r.get("test_acc")),
                    "robust_probe_acc": r.get("robust_probe_acc")})
    return out


class _Spans:
    """--one-schedule: each training stage's part of one cosine over all of them; else each its own (0, 1)."""

    def __init__(self, shared: bool, total_epochs: int) -> None:
        self.shared, self.total, self.done = shared, max(1, total_epochs), 0

    def next(self, epochs: int) -> tuple[float, float]:
        if not self.shared:
            return (0.0, 1.0)
        a, self.done = self.done, self.done + epochs
        return (a / self.total, min(1.0, self.done / self.total))


def _resolve_budget(opts: GrowOptions, spec0: ModelSpec) -> Budget:
    if opts.budget:
        return parse_budget(opts.budget)
    return growth_ratio_budget(spec0, opts.growth_ratio if opts.growth_ratio is not None else PAPER_GROWTH_RATIO[spec0.family])


def _shot_budget(budget: Budget, spec0: ModelSpec, spec: ModelSpec, shot: int, shots: int) -> Budget:
    """Multi-shot: the k-th of N shots grows to cost0 + k/N of the way to the final budget."""
    if shots == 1:
        return budget
    start = budget.cost(spec0)
    return dataclasses.replace(budget, limit=start + (budget.limit - start) * shot / shots)


def _reachable_new_ratio(spec: ModelSpec, budget: Budget, opts: GrowOptions, echo: Callable[[str], None]) -> float:
    """Raise the new-neuron ratio (recorded in growth.json, said on the console) if one shot cannot reach the budget."""
    ratio = reachable_new_ratio(spec, budget, opts.grower, opts.new_ratio)
    if ratio != opts.new_ratio:
        echo(f"growth: raising --new-ratio from {opts.new_ratio} to {ratio} so one shot can reach {budget.describe()}")
    return ratio

def like_spec(path: str) -> ModelSpec:
    """The final model of a GEARnn run (its last trained stage after growth), for --like."""
    run = RunDir.open(path)
    for stage in reversed((run.load_summary() or RunSummary()).stages):
        if stage.kind in ("train", "era") and stage.name != "backbone" and stage.checkpoint:
            payload = load_checkpoint(run.path / stage.checkpoint)
            return ModelSpec.from_dict(payload["spec"])
    raise ConfigError(f"run {path} has no grown stage to copy the size of", "pass a gearnn2/gearnn1 run directory")


def _baseline_spec(opts: GrowOptions, spec0: ModelSpec, like: Optional[ModelSpec]) -> ModelSpec:
    """The fixed-size baseline: the grown spec of another run (--like), or the widest uniform scaling in budget."""
    if like is not None:
        if (like.num_classes, like.input_size) != (spec0.num_classes, spec0.input_size):
            raise ConfigError(f"the --like run was trained on {like.num_classes} classes of {like.input_size}px images, "
                              f"this data has {spec0.num_classes} classes of {spec0.input_size}px",
                              "--like a run on the same data (or copy only the widths: gear-trt train --widths-from ITS_CHECKPOINT)")
        return like
    budget = _resolve_budget(opts, spec0)
    arch, classes, size = spec0.family, spec0.num_classes, spec0.input_size
    lo, _ = width_multiplier_bracket(arch, budget.fits, classes, size)
    small = scaled_spec(arch, lo, classes, size)
    if not budget.fits(small):
        raise BudgetBelowBackbone(f"budget {budget.describe()} is below the smallest {arch} ({budget.describe(budget.cost(small))})",
                               "give a larger budget")
    return small


class _FirstView:
    """The loader's batches with only the first view of ERA's (clean, aug1, aug2); keeps len() so growth can stream."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return (((x[0] if isinstance(x, tuple) else x), y) for x, y in self.loader)


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
