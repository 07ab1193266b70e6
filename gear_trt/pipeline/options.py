"""The options of the run commands, defined once: dataclass fields that generate the argparse options,
are validated at the command boundary (before anything is created) and are recorded in config.json.

    SHARED            what `grow` and `train` share, each option once: data, model family, optimiser, ERA, device
    GrowOptions       + pipeline, preset, budget / growth ratio, growth, robust evaluation
    TrainOptions      + the fixed model's size, augmentation, epochs

A flag has one spelling, one default, one check and one help text in every command that takes it.
Defaults of the optimiser come from TrainConfig, choices from gear_trt.choices. Stdlib only, so
`gear-trt <command> --help` builds its parser without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any, Mapping, Optional, Sequence, TypeVar, Union

from gear_trt.choices import DEFAULT_FAMILY, FAMILIES, GROWERS, PIPELINES, PRESETS
from gear_trt.errors import ConfigError
from gear_trt.train.config import AMP_MODES, TrainConfig, amp_mode, channels_last_mode
from gear_trt.train.schedule import SCHEDULES, check_schedule

MAX_IMAGE_SIZE = 1024  # pixels per side: the packed split lives in memory, N x S x S x 3 bytes
AUGMENTS = ("standard", "era", "none")
ROBUST_EVAL = ("auto", "none", "full")  # or a number of test images
ERA_MAX_SEVERITY = 10  # gear_trt.data.era.MAX_SEVERITY (that module imports torch)
# Legacy spellings kept as hidden aliases: flag -> the fields it sets.
ALIASES: dict[str, tuple[str, ...]] = {"--max-per-class": ("train_per_class", "test_per_class")}

DATA, MODEL, TRAINING, ERA_GROUP, GROWTH, RUN = "data", "model", "training", "ERA (AugMix-style augmentation)", "growth", "run"
GROUP_ORDER = (MODEL, GROWTH, DATA, TRAINING, ERA_GROUP, RUN)  # the order --help shows them in
_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one option field appears on the command line and how it is checked."""

    help: str
    group: str
    metavar: Optional[str] = None
    choices: Optional[Sequence[str]] = None  # checked by validate(), listed in the help
    minimum: Optional[float] = None  # value >= minimum (> with open_minimum)
    open_minimum: bool = False
    maximum: Optional[float] = None
    multiple_of: Optional[int] = None
    what: Optional[str] = None  # how messages name it ("learning rate"); default: the flag
    example: Optional[str] = None  # the value a fix suggests; default: the default
    default_text: Optional[str] = None  # how the help shows the default when the value would mislead
    hidden: bool = False
    resumable: bool = False  # may differ when a run resumes (it does not change the numbers)
    optional_value: bool = False  # `--flag` alone means True, `--flag VALUE` a value, `--no-flag` False


def option(default: Any, help: str, group: str, **flag: Any) -> Any:
    return dataclasses.field(default=default, metadata={"flag": Flag(help, group, **flag)})


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


Options = TypeVar("Options", bound="TrainingOptions")


# The options grow and train share, each defined once: name -> (default, flag). Each command's
# dataclass declares them, in its own order, with shared(name).
SHARED: dict[str, tuple[Any, Flag]] = {
    "data": ("builtin", Flag("builtin, cifar10:ROOT, cifar100:ROOT, an image-folder directory or a .zip of one", DATA, metavar="SRC")),
    "image_size": (None, Flag(f"resize every image to PX x PX (a multiple of 8, at most {MAX_IMAGE_SIZE})", DATA, metavar="PX", minimum=8,
                              maximum=MAX_IMAGE_SIZE, multiple_of=8, example="32", default_text="the data's own size")),
    "train_per_class": (None, Flag("use only N training images per class, drawn with --seed (quick runs)", DATA, metavar="N", minimum=1,
                                   example="100", default_text="all")),
    "test_per_class": (None, Flag("use only N test images per class, drawn with --seed", DATA, metavar="N", minimum=1, example="20",
                                  default_text="all")),
    "arch": (DEFAULT_FAMILY, Flag("model family (not given: the family of --like / --widths-from, if any)", MODEL, metavar="ARCH",
                                  choices=FAMILIES)),
    "seed": (_TRAIN_DEFAULTS["seed"], Flag("seeds the initial weights, the data order and subsets, the augmentation", TRAINING,
                                           metavar="N", minimum=0, maximum=2**31 - 1)),
    "batch_size": (_TRAIN_DEFAULTS["batch_size"], Flag("training batch size", TRAINING, metavar="N", minimum=1, what="batch size")),
    "lr": (_TRAIN_DEFAULTS["lr"], Flag("peak SGD learning rate, used as given", TRAINING, metavar="LR", minimum=0, open_minimum=True,
                                       what="learning rate")),
    "momentum": (_TRAIN_DEFAULTS["momentum"], Flag("SGD momentum", TRAINING, metavar="M", minimum=0, maximum=0.999)),
    "nesterov": (_TRAIN_DEFAULTS["nesterov"], Flag("Nesterov momentum", TRAINING)),
    "weight_decay": (_TRAIN_DEFAULTS["weight_decay"], Flag("weight decay on every parameter", TRAINING, metavar="WD", minimum=0)),
    "schedule": (_TRAIN_DEFAULTS["schedule"], Flag("lr schedule", TRAINING, metavar="KIND", choices=SCHEDULES, what="lr schedule")),
    "milestones": (",".join(str(m) for m in TrainConfig(epochs=1).milestones), Flag("step schedule: lr x0.1 at these fractions of a stage",
                                                                                    TRAINING, metavar="F,F")),
    # Without warmup, VGG-19 from scratch at lr 0.1 stays at chance for some seeds (measured: seed 2
    # backbone 11% vs 33% after 3 epochs), hence 1 here while the bare TrainConfig has none.
    "warmup_epochs": (1.0, Flag("linear lr warmup of each training stage, capped at half the stage", TRAINING, metavar="E", minimum=0)),
    "label_smoothing": (_TRAIN_DEFAULTS["label_smoothing"], Flag("label smoothing of the cross-entropy", TRAINING, metavar="S", minimum=0,
                                                                 maximum=0.999)),
    "ema": (_TRAIN_DEFAULTS["ema"], Flag("decay per step of an exponential moving average of the weights, which each stage then "
                                         "evaluates, saves and hands on (e.g. 0.999; 0: off)", TRAINING, metavar="D", minimum=0, maximum=0.9999,
                                         example="0.999")),
    "era_width": (1, Flag("ERA mixture width W (the paper: 1; AugMix: 3)", ERA_GROUP, metavar="W", minimum=1, maximum=8)),
    "era_depth": (3, Flag("ERA chain depth D (each chain applies 1..D ops)", ERA_GROUP, metavar="D", minimum=1, maximum=16)),
    "era_severity": (3, Flag(f"ERA op severity 1..{ERA_MAX_SEVERITY} (AugMix: 3)", ERA_GROUP, metavar="S", minimum=1,
                             maximum=ERA_MAX_SEVERITY)),
    "jsd": (False, Flag("AugMix's Jensen-Shannon consistency loss on ERA stages (clean + 2 views, weight 12)", ERA_GROUP)),
    "device": ("auto", Flag("auto, cpu, cuda or cuda:N", RUN, metavar="DEV", resumable=True)),
    "amp": (_TRAIN_DEFAULTS["amp"], Flag(f"mixed precision: {', '.join(AMP_MODES)} (auto = fp16 on CUDA, off on the CPU; --no-amp = off)",
                                         RUN, metavar="MODE", optional_value=True, default_text="auto")),
    "channels_last": (_TRAIN_DEFAULTS["channels_last"], Flag("NHWC memory format on CUDA", RUN)),
}


def shared(name: str) -> Any:
    """A dataclass field for the shared option `name` (a fresh Field each time: each class owns its own)."""
    default, flag = SHARED[name]
    return dataclasses.field(default=default, metadata={"flag": flag})


class TrainingOptions:
    """What grow's and train's options have in common: the shared fields (typed here, declared in each
    command's dataclass) and the methods that build, check and record them."""

    data: str
    image_size: Optional[int]
    train_per_class: Optional[int]
    test_per_class: Optional[int]
    arch: str
    seed: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: str
    milestones: str
    warmup_epochs: float
    label_smoothing: float
    ema: float
    era_width: int
    era_depth: int
    era_severity: int
    jsd: bool
    device: str
    amp: Union[bool, str]
    channels_last: bool

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def flags(cls) -> list[tuple[dataclasses.Field, Flag]]:
        return [(f, f.metadata["flag"]) for f in dataclasses.fields(cls) if "flag" in f.metadata]  # type: ignore[arg-type]

    @classmethod
    def resolve(cls: type[Options], given: Mapping[str, Any], saved: Optional[Mapping[str, Any]] = None) -> Options:
        """Given flags, else the resumed run's recorded options, else the defaults.

        A resumed run may not change an option that changes its numbers: that is refused here,
        before the run directory is touched.
        """
        values: dict[str, Any] = {}
        for f, flag in cls.flags():
            # What the run used: its record, or the default for an option recorded as null or not at all.
            recorded = f.default if saved is None or saved.get(f.name) is None else saved[f.name]
            if f.name in given and saved is not None and given[f.name] != recorded and not flag.resumable:
                name = flag_name(f.name)
                raise ConfigError(f"{name} {given[f.name]} differs from the run being resumed ({'not set' if recorded is None else recorded})",
                                  f"drop {name} to resume with the run's options, or start a new --out")
            values[f.name] = given[f.name] if f.name in given else recorded
        return cls(**values)

    # -- validation ---------------------------------------------------------------------------------
    def validate(self: Options) -> Options:
        """Check every option on its own and together; returns self. Pure: reads no file, loads nothing heavy."""
        for f, flag in self.flags():
            _check_value(f.name, getattr(self, f.name), f.default, flag)
        check_schedule(self.schedule, parse_milestones(self.milestones), 0.0, 1)
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0", "pass --momentum 0.9 or --no-nesterov")
        _check_device(self.device)
        amp_mode(self.amp)
        channels_last_mode(self.channels_last)
        return self

    def train_config(self, epochs: int) -> TrainConfig:
        """One training stage's TrainConfig (the warmup capped at half the stage)."""
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                           weight_decay=self.weight_decay, schedule=self.schedule, milestones=parse_milestones(self.milestones),
                           warmup_epochs=min(self.warmup_epochs, epochs / 2), label_smoothing=self.label_smoothing, ema=self.ema, amp=self.amp,
                           channels_last=self.channels_last, seed=self.seed, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclasses.dataclass
class GrowOptions(TrainingOptions):
    """`gear-trt grow`: a GEARnn pipeline or a baseline into a run directory. The field order is how a run
    is described (config.json, a sweep's trial names)."""

    data: str = shared("data")
    image_size: Optional[int] = shared("image_size")
    arch: str = shared("arch")
    # gearnn1 by default: ERA from growth on measured better than the paper's clean grown stage + ERA (docs/paper_comparison.md)
    pipeline: str = option("gearnn1", "gearnn1 (ERA throughout: backbone -> OSG -> grown), gearnn2 (the paper's: clean backbone -> OSG -> "
                           "clean grown -> ERA), small-clean, small-aug",
                           GROWTH, metavar="NAME", choices=tuple(PIPELINES))
    preset: str = option("quick", "epochs per stage: quick (CPU minutes), cpu (the CPU protocol, 12/1/12/12, baselines 48) or paper (40/1/40/40, baselines 160)", GROWTH, metavar="NAME",
                         choices=tuple(PRESETS))
    budget: Optional[str] = option(None, "final size: 250k (parameters), 1.5MB@int8 (deployed bytes), 300MB@train[:BATCH] (training memory)",
                                   GROWTH, metavar="SIZE", default_text="the paper's growth ratio")
    growth_ratio: Optional[float] = option(None, "the paper's gamma: add gamma x (sum of widths) neurons", GROWTH, metavar="G",
                                           minimum=0, open_minimum=True, maximum=100, example="0.9",
                                           default_text="the paper's value per family")
    like: Optional[str] = option(None, "small-* baselines: the final model of this GEARnn run (its family and widths; "
                                 "--budget / --growth-ratio are then that run's)", GROWTH,
                                 metavar="RUN_DIR", default_text="none")
    shots: int = option(1, "growth steps (1 = One-Shot Growth; N splits the budget and the grown epochs)", GROWTH, metavar="N",
                        minimum=1, maximum=64)
    # gradmax by default: in the growth study (docs/growers.md, 3 seeds) it beat firefly on every family and random
    # insertion on vgg19 (tied on resnet18 and mobilenet_v1), at 0.4-0.6 backbone epochs instead of firefly's 3.6-5.5
    grower: str = option("gradmax", "growth operator: gradmax (closed form), firefly (trained split/new candidates), random (control)",
                         GROWTH, metavar="NAME", choices=GROWERS, what="grower")
    new_ratio: float = option(0.5, "new-neuron candidates per layer, as a fraction of its width", GROWTH, metavar="R", minimum=0, maximum=4)
    stage_epochs: Optional[str] = option(None, "epochs per stage instead of the preset's: backbone,grown,robust,baseline "
                                         "(grown 0 goes from growth straight to the robust stage)", GROWTH, metavar="B,G,R,S",
                                         default_text="the preset's")
    one_schedule: bool = option(False, "the training stages share one cosine learning-rate schedule, each taking its share of "
                                "the epochs, instead of each starting again at --lr", GROWTH)
    post_growth_lr: float = option(1.0, "peak learning rate of the stages after growth (grown, robust) as a fraction of --lr: "
                                   "below 1 they fine-tune instead of restarting", GROWTH, metavar="F", minimum=0, open_minimum=True,
                                   maximum=1)
    new_neuron_warmup: float = option(0.0, "epochs over which the neurons growth added ramp their learning rate from 0 to the "
                                      "stage's, in the first stage after each growth (0: from the start)", GROWTH, metavar="E",
                                      minimum=0, maximum=1000)
    growth_pass: float = option(1.0, "fraction of an epoch the growth candidates train for (the paper: 1, one pass)", GROWTH,
                                metavar="F", minimum=0, open_minimum=True, maximum=1)
    seed: int = shared("seed")
    batch_size: int = shared("batch_size")
    lr: float = shared("lr")
    momentum: float = shared("momentum")
    nesterov: bool = shared("nesterov")
    weight_decay: float = shared("weight_decay")
    schedule: str = shared("schedule")
    milestones: str = shared("milestones")
    warmup_epochs: float = shared("warmup_epochs")
    label_smoothing: float = shared("label_smoothing")
    ema: float = shared("ema")
    device: str = shared("device")
    amp: Union[bool, str] = shared("amp")
    channels_last: bool = shared("channels_last")
    era_width: int = shared("era_width")
    era_depth: int = shared("era_depth")
    era_severity: int = shared("era_severity")
    jsd: bool = shared("jsd")
    robust_eval: str = option("auto", "corruption sweep per stage: auto (the preset's subset), none, full, or N test images", GROWTH,
                              metavar="MODE")
    curve_images: str = option("auto", "robust accuracy after every epoch on N pre-corrupted test images: auto (the preset's; "
                               "none when --robust-eval none), none, or N", GROWTH, metavar="MODE")
    train_per_class: Optional[int] = shared("train_per_class")
    test_per_class: Optional[int] = shared("test_per_class")
    epochs_scale: float = option(1.0, "multiply every stage's epochs (smoke tests, sensitivity studies)", GROWTH, minimum=0,
                                 open_minimum=True, maximum=1000, hidden=True)

    def validate(self) -> "GrowOptions":
        super().validate()
        robust_eval_images(self.robust_eval, 1)
        curve_images(self.curve_images, 1, self.robust_eval)
        if self.stage_epochs is not None:
            parse_stage_epochs(self.stage_epochs)
        if self.budget is not None and self.growth_ratio is not None:
            raise ConfigError("--budget and --growth-ratio both set the final size", "pass only one of them")
        if self.budget is not None:
            from gear_trt.grow.budget import parse_budget

            parse_budget(self.budget)
        kind = PIPELINES[self.pipeline]
        if self.like is not None:
            if kind.grows:
                raise ConfigError("--like applies to the small-clean and small-aug baselines only", "drop --like, or pass --pipeline small-clean")
        if self.shots > 1 and not kind.grows:
            raise ConfigError(f"--shots applies to the growing pipelines, not {self.pipeline}", "drop --shots, or pass --pipeline gearnn2")
        return self


@dataclasses.dataclass
class TrainOptions(TrainingOptions):
    """`gear-trt train`: one fixed-size model (the paper's Small baselines) into a run directory."""

    arch: str = shared("arch")
    # The model's widths: one of these four, else the full model.
    widths: Optional[str] = option(None, "every width group's channels, comma-separated (see `gear-trt inspect`)", MODEL, metavar="W,W,...",
                                   default_text="the full model")
    width_mult: Optional[float] = option(None, "all full-model widths times F (e.g. 0.125)", MODEL, metavar="F", minimum=0,
                                         open_minimum=True, maximum=64, example="0.125")
    params: Optional[str] = option(None, "uniformly scaled to about N parameters (e.g. 250k, 1.2M)", MODEL, metavar="N")
    widths_from: Optional[str] = option(None, "the family and widths of a checkpoint (e.g. a GEARnn stage)", MODEL, metavar="CKPT")
    data: str = shared("data")
    image_size: Optional[int] = shared("image_size")
    train_per_class: Optional[int] = shared("train_per_class")
    test_per_class: Optional[int] = shared("test_per_class")
    augment: str = option("standard", "standard (crop + flip), era (+ ERA views) or none", DATA, metavar="KIND", choices=AUGMENTS)
    jsd: bool = shared("jsd")
    epochs: int = option(40, "training epochs", TRAINING, metavar="N", minimum=1, maximum=100_000, what="epochs")
    batch_size: int = shared("batch_size")
    lr: float = shared("lr")
    momentum: float = shared("momentum")
    nesterov: bool = shared("nesterov")
    weight_decay: float = shared("weight_decay")
    schedule: str = shared("schedule")
    milestones: str = shared("milestones")
    warmup_epochs: float = shared("warmup_epochs")
    label_smoothing: float = shared("label_smoothing")
    ema: float = shared("ema")
    amp: Union[bool, str] = shared("amp")
    channels_last: bool = shared("channels_last")
    seed: int = shared("seed")
    device: str = shared("device")
    era_width: int = shared("era_width")
    era_depth: int = shared("era_depth")
    era_severity: int = shared("era_severity")

    def validate(self) -> "TrainOptions":
        super().validate()
        chosen = [k for k in ("widths", "width_mult", "params", "widths_from") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ConfigError(f"{flag_name(chosen[0])} and {flag_name(chosen[1])} both set the widths",
                              "give only one of --widths, --width-mult, --params, --widths-from")
        if self.jsd and self.augment != "era":
            raise ConfigError("--jsd needs ERA views", "add --augment era, or drop --jsd")
        if self.params is not None:
            from gear_trt.grow.budget import parse_count

            parse_count(self.params)
        return self


# -- argparse --------------------------------------------------------------------------------------------
def add_options(parser: argparse.ArgumentParser, cls: type[TrainingOptions], command: str) -> None:
    """One argparse option per field of `cls` (absent flags stay absent: see `given`), plus --out, --resume, --quiet."""
    hints = typing.get_type_hints(cls)
    used = {flag.group for _, flag in cls.flags()} | {RUN}
    groups = {name: parser.add_argument_group(name) for name in GROUP_ORDER if name in used}
    for f, flag in cls.flags():
        group = groups[flag.group]
        kind = _base_type(hints[f.name])
        name = flag_name(f.name)
        if flag.optional_value:
            group.add_argument(name, dest=f.name, nargs="?", const=True, metavar=flag.metavar, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS if flag.hidden else f"{flag.help} (default {flag.default_text or f.default})")
            group.add_argument(f"--no-{name[2:]}", dest=f.name, action="store_const", const=False, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)
            continue
        if kind is bool:
            shown = "on" if f.default else "off"
            text = f"{flag.help} (default {shown}; --no-{name[2:]} turns it off)" if f.default else f"{flag.help} (default {shown})"
            group.add_argument(name, dest=f.name, action="store_const", const=True, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS if flag.hidden else text)
            group.add_argument(f"--no-{name[2:]}", dest=f.name, action="store_const", const=False, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)
            continue
        notes = [f"default {flag.default_text or f.default}"] if flag.default_text or f.default is not None else []
        notes += [f"one of {', '.join(flag.choices)}"] if flag.choices else []
        text = f"{flag.help} ({'; '.join(notes)})" if notes else flag.help
        group.add_argument(name, dest=f.name, type=kind, metavar=flag.metavar, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS if flag.hidden else text)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # (as in flags(): the subclasses are the dataclasses)
    for alias, targets in ALIASES.items():
        if all(t in fields for t in targets):
            parser.add_argument(alias, dest=alias[2:].replace("-", "_"), type=_base_type(hints[targets[0]]), default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
    # Where a run goes and how it talks: not options of the run (they do not change its results).
    run = groups[RUN]
    run.add_argument("--out", metavar="RUN_DIR",
                     help=f"run directory (default: a new $GEAR_TRT_HOME/runs/{command}-<time>, GEAR_TRT_HOME=~/.local/share/gear-trt)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped, with its recorded options")
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def given(args: argparse.Namespace, cls: type[TrainingOptions]) -> dict[str, Any]:
    """The options of `cls` the user passed (legacy aliases expanded; a flag given beats its alias)."""
    values = vars(args)
    out = {f.name: values[f.name] for f, _ in cls.flags() if f.name in values}
    for alias, targets in ALIASES.items():
        dest = alias[2:].replace("-", "_")
        if dest in values:
            for target in targets:
                out.setdefault(target, values[dest])
    return out


# -- parsing helpers ---------------------------------------------------------------------------------------
def parse_milestones(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = (math.nan,)
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--milestones '{text}' is not a comma-separated list of numbers", "e.g. --milestones 0.5,0.75")
    return values


def robust_eval_images(mode: str, preset_images: int, test_images: Optional[int] = None) -> int:
    """How many test images a --robust-eval mode sweeps (0: no sweep)."""
    if mode == "auto":
        return preset_images
    if mode == "none":
        return 0
    if mode == "full":
        return test_images if test_images is not None else preset_images
    return _image_count("--robust-eval", mode, "auto, none, full", "200")


def parse_stage_epochs(text: str) -> tuple[int, int, int, int]:
    """--stage-epochs B,G,R,S: backbone and baseline at least 1, grown and robust at least 0."""
    try:
        b, g, r, s = (int(v) for v in text.split(","))
    except ValueError:
        b = g = r = s = -1
    if min(b, s) < 1 or min(g, r) < 0:
        raise ConfigError(f"--stage-epochs '{text}' is not four whole numbers backbone,grown,robust,baseline",
                          "e.g. --stage-epochs 12,12,12,48 (backbone and baseline at least 1)")
    return b, g, r, s


def curve_images(mode: str, preset_images: int, robust_eval: str = "auto") -> int:
    """How many pre-corrupted test images a --curve-images mode scores after each epoch (0: none)."""
    if mode == "auto":
        return 0 if robust_eval == "none" else preset_images
    if mode == "none":
        return 0
    return _image_count("--curve-images", mode, "auto, none", "1000")


def _image_count(flag: str, mode: str, words: str, example: str) -> int:
    """A number of images (>= 1) given where a mode word was not: the shared tail of the image-count options."""
    try:
        n = int(mode)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{flag} '{mode}' is not {words} or a number of images", f"e.g. {flag} {example} or {flag} none")
    return n


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _check_value(name: str, value: Any, default: Any, flag: Flag) -> None:
    if value is None:
        return
    label = flag.what or flag_name(name)
    example = f"{flag_name(name)} {flag.example if flag.example is not None else default}"
    if flag.choices is not None:
        if value not in flag.choices:
            raise ConfigError(f"unknown {label} '{value}'", f"choose one of {', '.join(flag.choices)}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, got {value}", f"pass e.g. {example}")
    low, high, step = flag.minimum, flag.maximum, flag.multiple_of
    ok = (low is None or (value > low if flag.open_minimum else value >= low)) and (high is None or value <= high)
    if not ok or (step is not None and value % step):
        raise ConfigError(f"{label} must be {_rule(flag)}, got {value}", f"pass e.g. {example}")


def _rule(flag: Flag) -> str:
    low, high = flag.minimum, flag.maximum
    if low is not None and high is not None:
        span = f"> {low:g} and <= {high:g}" if flag.open_minimum else f"from {low:g} to {high:g}"
    elif low is not None:
        span = f"> {low:g}" if flag.open_minimum else f">= {low:g}"
    else:
        span = f"<= {high:g}"
    return f"a multiple of {flag.multiple_of} {span}" if flag.multiple_of else span


def _check_device(device: str) -> None:
    text = str(device)
    ok = text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())
    if not ok:
        raise ConfigError(f"unknown device '{device}'", "use cpu, cuda, cuda:N or auto")
