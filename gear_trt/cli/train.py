"""`gear-trt train`: train a fixed-size model (the paper's Small baselines) into a run directory.

    gear-trt train --arch vgg19 --params 250k --epochs 160 --augment era --out runs/small-aug
    gear-trt train --resume --out runs/small-aug          # continue a killed run, same options

Writes RUN_DIR/config.json, manifest.json, summary.json, logs/train.log and checkpoints/final.pt
(a checkpoint after every epoch; `complete` is true once all epochs ran).
Only argparse and the standard library load at import time (`--help` stays instant).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Optional

from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.spec import FAMILIES

STAGE = "train"
FINAL = "final"  # the checkpoint's name: RUN_DIR/checkpoints/final.pt
AUGMENTS = ("standard", "era", "none")

# Every option's default. Flags default to None so a resumed run can tell "given" from "default".
DEFAULTS: dict[str, Any] = {
    "arch": None, "widths": None, "width_mult": None, "params": None, "widths_from": None,
    "data": "builtin", "image_size": None, "max_per_class": None, "augment": "standard", "jsd": False,
    "epochs": 40, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
    "schedule": "cosine", "milestones": "0.5,0.75", "warmup_epochs": None, "label_smoothing": 0.0,
    "amp": True, "channels_last": True, "seed": 0, "device": "auto",
}
# Options that may change when a run resumes (they do not change the numbers on the CPU).
RESUMABLE_CHANGES = ("device", "amp", "channels_last")
WIDTH_OPTIONS = ("widths", "width_mult", "params", "widths_from")


def _switch(group: "argparse._ArgumentGroup", name: str, help_text: str) -> None:
    """--name / --no-name into one dest, default None (argparse.BooleanOptionalAction needs Python 3.9)."""
    dest = name.replace("-", "_")
    group.add_argument(f"--{name}", dest=dest, action="store_const", const=True, default=None, help=help_text)
    group.add_argument(f"--no-{name}", dest=dest, action="store_const", const=False, help=argparse.SUPPRESS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    model = p.add_argument_group("model (one of --widths, --width-mult, --params, --widths-from; default: the full model)")
    model.add_argument("--arch", metavar="ARCH", help=f"model family: {', '.join(FAMILIES)}")
    model.add_argument("--widths", metavar="W,W,...", help="every width group's channels, comma-separated (see `gear-trt inspect`)")
    model.add_argument("--width-mult", type=float, metavar="F", help="all full-model widths times F (e.g. 0.125)")
    model.add_argument("--params", metavar="N", help="uniformly scaled to about N parameters (e.g. 250k, 1.2M)")
    model.add_argument("--widths-from", metavar="CKPT", help="copy family and widths from a checkpoint (e.g. a GEARnn stage)")

    data = p.add_argument_group("data")
    data.add_argument("--data", metavar="SRC", help=f"builtin, cifar10:<root>, cifar100:<root>, a folder or a .zip (default {d['data']})")
    data.add_argument("--image-size", type=int, metavar="PX", help="resize images to PX x PX (default: the data's size)")
    data.add_argument("--max-per-class", type=int, metavar="N", help="use at most N images per class of each split (quick runs)")
    data.add_argument("--augment", metavar="KIND", help=f"{', '.join(AUGMENTS)}: crop+flip, + ERA (AugMix W=1 D=3), or nothing (default {d['augment']})")
    _switch(data, "jsd", "with --augment era: AugMix's JSD consistency loss (3 views)")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, metavar="N", help=f"default {d['epochs']}")
    opt.add_argument("--batch-size", type=int, metavar="N", help=f"default {d['batch_size']}")
    opt.add_argument("--lr", type=float, metavar="LR", help=f"peak SGD learning rate, used as given (default {d['lr']})")
    opt.add_argument("--momentum", type=float, metavar="M", help=f"default {d['momentum']}")
    _switch(opt, "nesterov", "Nesterov momentum (default on; --no-nesterov turns it off)")
    opt.add_argument("--weight-decay", type=float, metavar="WD", help=f"default {d['weight_decay']}")
    opt.add_argument("--schedule", metavar="KIND", help=f"cosine, step or constant (default {d['schedule']})")
    opt.add_argument("--milestones", metavar="F,F", help=f"step schedule: lr x0.1 at these fractions of the epochs (default {d['milestones']})")
    opt.add_argument("--warmup-epochs", type=float, metavar="E", help="linear lr warmup (default 1, at most half the epochs)")
    opt.add_argument("--label-smoothing", type=float, metavar="S", help="default 0")
    opt.add_argument("--seed", type=int, metavar="N", help="seeds the init, the data order and the augmentation (default 0)")

    run = p.add_argument_group("run")
    run.add_argument("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (default auto)")
    run.add_argument("--amp", metavar="MODE", nargs="?", const=True,
                     help="mixed precision: auto (fp16 on CUDA, off on the CPU; the default), fp16, bf16 or off (--no-amp)")
    run.add_argument("--no-amp", dest="amp", action="store_const", const=False, help=argparse.SUPPRESS)
    _switch(run, "channels-last", "NHWC memory format on CUDA (default on; --no-channels-last turns it off)")
    run.add_argument("--out", metavar="RUN_DIR", help="run directory (default: $GEAR_TRT_HOME/runs/train-<time>, GEAR_TRT_HOME=~/.local/share/gear-trt)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bars; only the result line")


def run(args: argparse.Namespace) -> int:
    from gear_trt.pipeline import RunDir

    out = getattr(args, "out", None)
    run_dir = None
    saved: dict[str, Any] = {}
    if args.resume:
        run_dir = RunDir.create(out, "train", resume=True, argv=sys.argv[1:])
        saved = (run_dir.read_config() or {}).get("options", {})
        if not run_dir.checkpoint(FINAL).exists():
            raise ArtifactError(f"{run_dir.path} has no {run_dir.rel(run_dir.checkpoint(FINAL))} to resume from",
                                "drop --resume and start a new run (choose a new --out)")
    opts = resolve_options(args, saved)
    _check_options(opts)

    # Everything that can fail on user input is checked before the run directory is created.
    from gear_trt.data import BatchLoader, load_source
    from gear_trt.pipeline import stage_entry
    from gear_trt.train import TrainConfig, accuracy_eval, resolve_device, train
    from gear_trt.train.checkpoint import seed_everything

    warmup = min(1.0, opts["epochs"] / 2) if opts["warmup_epochs"] is None else opts["warmup_epochs"]
    config = TrainConfig(
        epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], momentum=opts["momentum"],
        nesterov=opts["nesterov"], weight_decay=opts["weight_decay"], schedule=opts["schedule"],
        milestones=parse_floats(opts["milestones"], "--milestones"), warmup_epochs=warmup,
        label_smoothing=opts["label_smoothing"], amp=opts["amp"], channels_last=opts["channels_last"],
        seed=opts["seed"], device=opts["device"]).validate()
    device = resolve_device(config.device)
    progress = not args.quiet
    train_ds = load_source(opts["data"], "train", image_size=opts["image_size"], max_per_class=opts["max_per_class"], progress=progress)
    test_ds = load_source(opts["data"], "test", image_size=train_ds.image_size, max_per_class=opts["max_per_class"], progress=progress)
    spec = resolve_spec(opts, num_classes=len(train_ds.classes), input_size=train_ds.image_size)

    if run_dir is None:
        run_dir = RunDir.create(out, "train", argv=sys.argv[1:])
    if not args.quiet:
        print(f"run directory: {run_dir.path}", file=sys.stderr)
    run_dir.manifest.update_environment()  # torch is loaded now: records the CUDA device, if any
    data_info = {"source": opts["data"], "train_images": len(train_ds), "test_images": len(test_ds),
                 "classes": list(train_ds.classes), "image_size": train_ds.image_size}
    if not run_dir.config_path.exists() or not args.resume:
        run_dir.write_config({"command": "train", "options": opts, "spec": spec.to_dict(),
                              "train": config.to_dict(), "data": data_info})

    augment, loss_fn = _augmentation(opts)
    loader = BatchLoader(train_ds, config.batch_size, train=True, device=device, seed=config.seed, augment=augment,
                         crop_padding=0 if opts["augment"] == "none" else 4, flip=opts["augment"] != "none")
    test_loader = BatchLoader(test_ds, max(256, config.batch_size), train=False, device=device)
    seed_everything(config.seed)  # the initial weights are a function of the seed
    from gear_trt.models import build_model

    model = build_model(spec)
    ckpt = run_dir.checkpoint(FINAL)
    log = run_dir.logger(STAGE)
    params = {"options": opts, "spec": spec.to_dict()}
    with run_dir.manifest.run_stage(STAGE, params) as record:
        result = train(model, loader, config, ckpt_path=ckpt, spec=spec, classes=train_ds.classes, stage=STAGE,
                       extra={"data": data_info, "augment": opts["augment"], "jsd": opts["jsd"]},
                       eval_fn=accuracy_eval(test_loader, amp=config.amp, channels_last=config.channels_last),
                       loss_fn=loss_fn, resume=args.resume, log=log, quiet=args.quiet)
        metrics = result.metrics
        entry = stage_entry(STAGE, checkpoint=run_dir.rel(ckpt), spec=spec.to_dict(), kind="train", epochs=config.epochs,
                            seconds=metrics.get("seconds_total"), clean_acc=metrics.get("test_acc"),
                            augment=opts["augment"], train_acc=metrics.get("train_acc"))
        record["artifacts"].append(ckpt)
        record["metrics"].update({k: result.metrics.get(k) for k in ("test_acc", "train_acc", "loss", "epochs", "seconds_total")})
        record["entry"] = entry
    run_dir.write_summary(run_dir.current_summary({"pipeline": "train", "arch": spec.family, "seed": config.seed, "data": opts["data"]}))
    note = " (already complete)" if result.epochs_run == 0 else ""
    print(f"{spec.family} {entry.params:,} params, {config.epochs} epoch{'s' if config.epochs != 1 else ''}{note}: "
          f"test acc {100 * (metrics.get('test_acc') or 0):.2f}%, train loss {metrics.get('loss', float('nan')):.4f}, "
          f"{metrics.get('seconds_total') or 0:.1f} s on {device} -> {ckpt}")
    return 0


def resolve_options(args: argparse.Namespace, saved: dict[str, Any]) -> dict[str, Any]:
    """Given flags, else the resumed run's options, else the defaults. A resumed run may not change them."""
    opts: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key, None)
        if saved and given is not None and key in saved and given != saved[key] and key not in RESUMABLE_CHANGES:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} {given} differs from the run being resumed ({saved[key]})",
                              f"drop {flag} to resume with the run's options, or start a new --out")
        opts[key] = given if given is not None else saved.get(key, default)
    return opts


def _check_options(opts: dict[str, Any]) -> None:
    chosen = [k for k in WIDTH_OPTIONS if opts[k] is not None]
    if len(chosen) > 1:
        raise ConfigError(f"--{chosen[0].replace('_', '-')} and --{chosen[1].replace('_', '-')} both set the widths",
                          "give only one of --widths, --width-mult, --params, --widths-from")
    if opts["arch"] is None and opts["widths_from"] is None:
        raise ConfigError("no model family given", f"pass --arch {' | '.join(FAMILIES)}")
    if opts["arch"] is not None and opts["arch"] not in FAMILIES:
        raise ConfigError(f"unknown --arch '{opts['arch']}'", f"choose one of {', '.join(FAMILIES)}")
    if opts["augment"] not in AUGMENTS:
        raise ConfigError(f"unknown --augment '{opts['augment']}'", f"choose one of {', '.join(AUGMENTS)}")
    if opts["jsd"] and opts["augment"] != "era":
        raise ConfigError("--jsd needs ERA views", "add --augment era, or drop --jsd")
    for key in ("image_size", "max_per_class"):
        if opts[key] is not None and opts[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {opts[key]}", f"pass a positive --{key.replace('_', '-')}")


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} '{text}' is not a comma-separated list of numbers", f"e.g. {flag} 0.5,0.75") from None


def parse_count(text: str) -> int:
    """'250k' -> 250000, '1.2M' -> 1200000, '5e5' -> 500000."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmM]?)\s*", str(text))
    if not m:
        raise ConfigError(f"--params '{text}' is not a parameter count", "e.g. --params 250k or --params 1.2M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    return int(round(value))


def resolve_spec(opts: dict[str, Any], *, num_classes: int, input_size: int):
    """The ModelSpec the options describe, for data with `num_classes` classes of `input_size` pixels."""
    from gear_trt.models import count_params, family, scaled_spec
    from gear_trt.spec import ModelSpec

    arch = opts["arch"]
    if opts["widths_from"] is not None:
        from gear_trt.train.checkpoint import checkpoint_spec, load_checkpoint

        source = checkpoint_spec(load_checkpoint(opts["widths_from"]), opts["widths_from"])
        if arch is not None and arch != source.family:
            raise ConfigError(f"--arch {arch} differs from {opts['widths_from']}'s family {source.family}",
                              "drop --arch (it comes from the checkpoint)")
        return ModelSpec(source.family, source.widths, num_classes=num_classes, input_size=input_size)
    full = family(arch).full_widths
    if opts["widths"] is not None:
        try:
            widths = tuple(int(w) for w in str(opts["widths"]).split(","))
        except ValueError:
            raise ConfigError(f"--widths '{opts['widths']}' is not a comma-separated list of integers",
                              f"give {len(full)} integers, e.g. {','.join(str(max(1, w // 8)) for w in full)}") from None
        if len(widths) != len(full):
            raise ConfigError(f"{arch} has {len(full)} width groups, --widths gives {len(widths)}",
                              f"give {len(full)} integers, e.g. {','.join(str(max(1, w // 8)) for w in full)}")
        return ModelSpec(arch, widths, num_classes=num_classes, input_size=input_size)
    if opts["params"] is not None:
        target = parse_count(opts["params"])
        smallest = count_params(scaled_spec(arch, 0.0, num_classes, input_size))
        if target < smallest:
            raise ConfigError(f"--params {opts['params']} is below the smallest {arch} ({smallest:,} parameters)",
                              f"ask for at least {smallest}")
        lo, hi = 0.0, 1.0
        while count_params(scaled_spec(arch, hi, num_classes, input_size)) < target:
            hi *= 2  # larger than the full model: allowed, just unusual
        for _ in range(40):  # parameters grow monotonically with the multiplier: bisect
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if count_params(scaled_spec(arch, mid, num_classes, input_size)) < target else (lo, mid)
        below, above = scaled_spec(arch, lo, num_classes, input_size), scaled_spec(arch, hi, num_classes, input_size)
        return min((below, above), key=lambda s: abs(count_params(s) - target))
    mult = 1.0 if opts["width_mult"] is None else float(opts["width_mult"])
    if not mult > 0:
        raise ConfigError(f"--width-mult must be > 0, got {mult}", "e.g. --width-mult 0.125")
    return scaled_spec(arch, mult, num_classes, input_size)


def _augmentation(opts: dict[str, Any]) -> tuple[Optional[Any], Optional[Any]]:
    """(BatchLoader augment hook, loss_fn) for --augment/--jsd."""
    if opts["augment"] != "era":
        return None, None
    from gear_trt.data.era import ERA, ERAConfig

    era = ERA(ERAConfig(jsd=bool(opts["jsd"])))
    if not opts["jsd"]:
        return era, None
    import torch

    from gear_trt.train.jsd import era_loss

    def jsd_loss_fn(model, x, y):  # one forward pass over the three views, split afterwards
        logits = model(torch.cat(tuple(x)))
        clean, aug1, aug2 = logits.chunk(3)
        return era_loss(clean, aug1, aug2, y), clean

    return era, jsd_loss_fn
