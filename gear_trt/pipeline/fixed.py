"""One fixed-size model trained once into a run directory: the `gear-trt train` pipeline (the paper's
Small baselines, or any width you name).

    plan = prepare_fixed(TrainOptions(arch="vgg19", params="250k", augment="era"))   # checks, loads the data
    entry, result = run_fixed(RunDir.create(out, "train"), plan)

Writes config.json, manifest.json, summary.json, logs/train.log and checkpoints/final.pt (a
checkpoint after every epoch; `complete` once all epochs ran). Resuming continues from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from gear_trt.artifacts.checkpoint import checkpoint_spec, load_checkpoint
from gear_trt.data import BatchLoader, ImageSet
from gear_trt.errors import ConfigError
from gear_trt.grow.budget import parse_count
from gear_trt.models import build_model, count_params, family, scaled_spec, width_multiplier_bracket
from gear_trt.pipeline.inputs import load_splits
from gear_trt.pipeline.options import TrainOptions
from gear_trt.pipeline.rundir import RunDir, stage_entry
from gear_trt.records import StageEntry
from gear_trt.spec import ModelSpec
from gear_trt.train import TrainConfig
from gear_trt.train.loop import TrainResult, accuracy_eval, resolve_device, train
from gear_trt.train.rng import seed_everything

STAGE = "train"
FINAL = "final"  # the checkpoint's name: RUN_DIR/checkpoints/final.pt


@dataclasses.dataclass
class FixedPlan:
    """A `train` run checked against its data, before anything is written."""

    opts: TrainOptions
    train_set: ImageSet
    test_set: ImageSet
    spec: ModelSpec
    config: TrainConfig


def prepare_fixed(opts: TrainOptions, *, progress: bool = True) -> FixedPlan:
    """Validate the options against the data and resolve the model: every user error before training."""
    opts.validate()
    source = widths_source(opts.widths_from) if opts.widths_from else None
    if source is not None and opts.arch != source.family:  # (the command line follows the checkpoint when --arch is not given)
        raise ConfigError(f"--arch {opts.arch} differs from {opts.widths_from}'s family {source.family}",
                          f"leave --arch out or pass --arch {source.family}")
    config = opts.train_config(opts.epochs).validate()
    resolve_device(opts.device)
    train_set, test_set = load_splits(opts, progress=progress)
    spec = resolve_spec(opts, num_classes=train_set.num_classes, input_size=train_set.image_size, source=source)
    return FixedPlan(opts, train_set, test_set, spec, config)


def widths_source(path: str) -> ModelSpec:
    """The spec of the checkpoint --widths-from names."""
    return checkpoint_spec(load_checkpoint(path), path)


def resolve_spec(opts: TrainOptions, *, num_classes: int, input_size: int, source: Optional[ModelSpec] = None) -> ModelSpec:
    """The ModelSpec the options describe, for data with `num_classes` classes of `input_size` pixels."""
    arch = opts.arch
    if source is not None:
        return ModelSpec(source.family, source.widths, num_classes=num_classes, input_size=input_size)
    full = family(arch).full_widths
    example = f"give {len(full)} integers, e.g. {','.join(str(max(1, w // 8)) for w in full)}"
    if opts.widths is not None:
        try:
            widths = tuple(int(w) for w in str(opts.widths).split(","))
        except ValueError:
            raise ConfigError(f"--widths '{opts.widths}' is not a comma-separated list of integers", example) from None
        if len(widths) != len(full):
            raise ConfigError(f"{arch} has {len(full)} width groups, --widths gives {len(widths)}", example)
        if min(widths) < 1:
            raise ConfigError(f"--widths must all be >= 1, got {min(widths)}", example)
        return ModelSpec(arch, widths, num_classes=num_classes, input_size=input_size)
    if opts.params is not None:
        target = parse_count(opts.params)
        smallest = count_params(scaled_spec(arch, 0.0, num_classes, input_size))
        if target < smallest:
            raise ConfigError(f"--params {opts.params} is below the smallest {arch} ({smallest:,} parameters)", f"ask for at least {smallest}")
        # Larger than the full model is allowed, just unusual: the search goes past it.
        lo, hi = width_multiplier_bracket(arch, lambda s: count_params(s) < target, num_classes, input_size, beyond_full=True)
        below, above = scaled_spec(arch, lo, num_classes, input_size), scaled_spec(arch, hi, num_classes, input_size)
        return min((below, above), key=lambda s: abs(count_params(s) - target))
    return scaled_spec(arch, 1.0 if opts.width_mult is None else opts.width_mult, num_classes, input_size)


def run_fixed(run: RunDir, plan: FixedPlan, *, resume: bool = False, quiet: bool = False,
              echo: Optional[Callable[[str], None]] = None) -> tuple[StageEntry, TrainResult]:
    """Train `plan` into `run` (continuing its checkpoint with `resume`); returns (summary entry, result)."""
    opts, spec, config = plan.opts, plan.spec, plan.config
    device = resolve_device(config.device)
    run.manifest.update_environment()  # torch is loaded now: records the CUDA device, if any
    data_info = {"source": opts.data, "train_images": len(plan.train_set), "test_images": len(plan.test_set),
                 "classes": list(plan.train_set.classes), "image_size": plan.train_set.image_size}
    if not run.config_path.exists() or not resume:
        run.write_config({"command": "train", "options": opts.to_dict(), "spec": spec.to_dict(), "train": config.to_dict(), "data": data_info})

    augment, loss_fn = _augmentation(opts)
    loader = BatchLoader(plan.train_set, config.batch_size, train=True, device=device, seed=config.seed, augment=augment,
                         crop_padding=0 if opts.augment == "none" else 4, flip=opts.augment != "none")
    test_loader = BatchLoader(plan.test_set, max(256, config.batch_size), train=False, device=device)
    seed_everything(config.seed)  # the initial weights are a function of the seed
    model = build_model(spec)
    ckpt = run.checkpoint(FINAL)
    with run.manifest.run_stage(STAGE, {"options": opts.to_dict(), "spec": spec.to_dict()}) as record:
        result = train(model, loader, config, ckpt_path=ckpt, spec=spec, classes=plan.train_set.classes, stage=STAGE,
                       extra={"data": data_info, "augment": opts.augment, "jsd": opts.jsd},
                       eval_fn=accuracy_eval(test_loader, amp=config.amp, channels_last=config.channels_last),
                       loss_fn=loss_fn, resume=resume, log=run.logger(STAGE, echo=echo), quiet=quiet)
        metrics = result.metrics
        entry = stage_entry(STAGE, checkpoint=run.rel(ckpt), spec=spec.to_dict(), kind="train", epochs=config.epochs,
                            seconds=metrics.get("seconds_total"), clean_acc=metrics.get("test_acc"),
                            augment=opts.augment, train_acc=metrics.get("train_acc"))
        record["artifacts"].append(ckpt)
        record["metrics"].update({k: metrics.get(k) for k in ("test_acc", "train_acc", "loss", "epochs", "seconds_total")})
        record["entry"] = entry
    run.write_summary(run.current_summary({"pipeline": "train", "arch": spec.family, "seed": config.seed, "data": opts.data}))
    return entry, result


def _augmentation(opts: TrainOptions) -> tuple[Optional[Any], Optional[Any]]:
    """(BatchLoader augment hook, loss_fn) for --augment/--jsd."""
    if opts.augment != "era":
        return None, None
    from gear_trt.data.era import ERA, ERAConfig
    from gear_trt.train.jsd import era_views_loss

    era = ERA(ERAConfig(width=opts.era_width, depth=opts.era_depth, severity=opts.era_severity, jsd=opts.jsd))
    return era, (era_views_loss if opts.jsd else None)
