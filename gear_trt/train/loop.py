"""The training loop: SGD with a per-step lr schedule, mixed precision, channels_last, exact resume.

`train(...)` runs one stage (a fresh optimizer each call: growth changes the parameters), writes a
checkpoint atomically after every epoch and, called again on the same checkpoint, continues from
the last finished epoch. On the CPU the resumed run ends with bit-identical weights: the optimizer,
scheduler, AMP scaler and every global RNG state travel in the checkpoint, and the loader's
shuffle is a pure function of (seed, epoch) through `loader.set_epoch(epoch)`.

Mixed precision is device-generic (`torch.autocast(device.type, dtype)`, `torch.amp.GradScaler(device.type)`):
fp16 with a GradScaler (the only choice on a Xavier, which has no bf16) or bf16 without one, on CUDA and on
the CPU alike, so the scaler's state, its checkpointing and its skipped steps are tested on the CPU. The
defaults keep the CPU in fp32 and NCHW ("auto": fp16 and channels_last on CUDA only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from gear_trt.artifacts.checkpoint import load_checkpoint, plain, save_checkpoint
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError, DataError
from gear_trt.spec import ModelSpec
from gear_trt.train.config import AMP_MODES, CHANNELS_LAST_MODES, TrainConfig, amp_mode, channels_last_mode  # noqa: F401 - re-exported
from gear_trt.train.ema import WeightAverage
from gear_trt.train.new_neurons import NewNeuronWarmup
from gear_trt.train.rng import rng_state, seed_everything, set_rng_state
from gear_trt.train.schedule import make_scheduler

Batch = Union[torch.Tensor, Sequence[torch.Tensor]]  # one view, or several (clean + augmented) for JSD
# loss_fn(model, x, y) -> loss, or (loss, logits of the clean view) so training accuracy can be shown.
LossFn = Callable[[nn.Module, Batch, torch.Tensor], Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]]]
EvalFn = Callable[[nn.Module], Mapping[str, float]]

# Fields that change the numbers a run produces; a checkpoint resumes only if they all match.
_DEVICE_ONLY_FIELDS = ("device",)

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_amp(value: Union[bool, str], device: torch.device) -> str:
    """What a run on `device` does: "off", "fp16" or "bf16"."""
    mode = amp_mode(value)
    if mode == "auto":
        return "fp16" if device.type == "cuda" else "off"
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BackendUnavailable(f"{torch.cuda.get_device_name(device)} has no bf16 support",
                                 "use amp fp16 (with its GradScaler) or auto on this GPU")
    return mode


def resolve_channels_last(value: Union[bool, str], device: torch.device) -> bool:
    mode = channels_last_mode(value)
    return mode == "on" or (mode == "auto" and device.type == "cuda")


@dataclasses.dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, Any]  # the last epoch's record plus totals (seconds, images_per_s)
    history: list[dict[str, Any]]  # one record per epoch: loss, train_acc, lr, seconds, images_per_s, eval metrics
    checkpoint: Path
    resumed_from: Optional[int]  # epochs already done when this call started (None: fresh start)
    epochs_run: int  # epochs trained by this call (0: the checkpoint was already complete)


class CrossEntropy:
    """The default loss: cross-entropy (optionally label-smoothed) on the first view of the batch."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, model: nn.Module, x: Batch, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(first_view(x))
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits


def first_view(x: Batch) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else x[0]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; asking for cuda without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'", "use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("CUDA was requested but torch sees no CUDA device", "use --device cpu, or install a CUDA build of torch")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device type '{device.type}' is not supported", "use cpu, cuda, cuda:N or auto")
    return device


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov, weight_decay=config.weight_decay)


def _to_device(x: Batch, device: torch.device, channels_last: bool) -> Batch:
    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    return move(x) if isinstance(x, torch.Tensor) else tuple(move(t) for t in x)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on the CPU (cheap there); on CUDA let cuDNN pick its fastest kernels."""
    if device.type != "cpu":
        previous_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # fixed input shapes: autotuning pays off after one batch
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous_benchmark
        return
    previous, previous_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _autocast(device: torch.device, mode: str) -> Any:
    """autocast for a resolved AMP mode ("off" gives a disabled context)."""
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES.get(mode, torch.float16), enabled=mode != "off")


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader: Iterable, *, device: Union[str, torch.device, None] = None,
                      amp: Union[bool, str] = False, channels_last: Union[bool, str] = False) -> float:
    """Top-1 accuracy of `model` over `loader` (its first view), in eval mode; restores the previous mode.
    amp / channels_last take the TrainConfig values (True = "auto": on CUDA only)."""
    return evaluate_loss_accuracy(model, loader, device=device, amp=amp, channels_last=channels_last)[1]


def evaluate_loss_accuracy(model: nn.Module, loader: Iterable, *, device: Union[str, torch.device, None] = None,
                           amp: Union[bool, str] = False, channels_last: Union[bool, str] = False) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of `model` over `loader` (as `evaluate_accuracy`)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    mode, nhwc = resolve_amp(amp, device), resolve_channels_last(channels_last, device)
    was_training = model.training
    model.eval()
    loss, correct, total = 0.0, 0, 0
    try:
        with torch.no_grad():
            for x, y in loader:
                x = first_view(_to_device(x, device, nhwc))
                y = y.to(device)
                with _autocast(device, mode):
                    logits = model(x)
                loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
                total += int(y.numel())
    finally:
        model.train(was_training)
    if total == 0:
        raise DataError("the evaluation data is empty", "check the data source and split")
    return loss / total, correct / total


def accuracy_eval(loader: Iterable, key: str = "test_acc", **kwargs: Any) -> EvalFn:
    """An eval_fn for `train` that reports top-1 accuracy on `loader` under `key`."""
    return lambda model: {key: evaluate_accuracy(model, loader, **kwargs)}


def train(
    model: nn.Module,
    loader: Iterable,
    config: TrainConfig,
    *,
    ckpt_path: Union[str, Path],
    spec: Union[ModelSpec, Mapping[str, Any]],
    classes: Sequence[str] = (),
    stage: str = "train",
    extra: Optional[Mapping[str, Any]] = None,
    eval_fn: Optional[EvalFn] = None,
    loss_fn: Optional[LossFn] = None,
    resume: bool = True,
    log: Optional[Callable[[str], None]] = None,
    quiet: bool = False,
    on_epoch_end: Optional[Callable[[dict[str, Any]], None]] = None,
    new_neurons: Optional[Mapping[str, torch.Tensor]] = None,
) -> TrainResult:
    """Train `model` for `config.epochs` epochs over `loader`, checkpointing to `ckpt_path` after each.

    loader: iterable of (x, y) with len() = batches per epoch and, ideally, set_epoch(e).
        x is a float NCHW batch or a tuple of views (the loss decides what to do with them).
    resume: if `ckpt_path` exists, continue from it (it must come from the same stage, spec and
        config); a complete checkpoint is loaded and returned without training.
    extra: weights_only-safe values (numbers, strings, lists, dicts, tensors) stored in the checkpoint.
    on_epoch_end(record): called after each epoch's checkpoint is on disk.
    new_neurons: {parameter name: bool mask} of the entries growth added (`added_entries`); with
        `config.new_neuron_warmup` their gradient ramps up over that many epochs (NewNeuronWarmup).
    """
    config.validate()
    device = resolve_device(config.device)
    spec_dict = spec.to_dict() if isinstance(spec, ModelSpec) else dict(spec)
    amp = resolve_amp(config.amp, device)
    channels_last = resolve_channels_last(config.channels_last, device)
    loss_fn = loss_fn or CrossEntropy(config.label_smoothing)
    ckpt_path = Path(ckpt_path)
    say = log or (lambda line: None)
    try:
        steps = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError("the training loader has no len()", "use gear_trt.data.BatchLoader") from None
    if steps == 0:
        raise DataError("the training data yields no batches", "use more images or a smaller --batch-size")

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, steps_per_epoch=steps, epochs=config.epochs, schedule=config.schedule,
                               warmup_epochs=config.warmup_epochs, milestones=config.milestones, gamma=config.gamma,
                               span=config.cosine_span)
    warm_new = (NewNeuronWarmup(model, new_neurons, config.new_neuron_warmup, steps)
                if new_neurons and config.new_neuron_warmup else None)
    average = WeightAverage(model, config.ema) if config.ema else None
    # fp16 needs loss scaling (its range ends at 65504); bf16 has fp32's range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    history: list[dict[str, Any]] = []
    resumed_from: Optional[int] = None
    if resume and ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)
        _check_resumable(payload, ckpt_path, stage=stage, spec=spec_dict, config=config)
        if payload.get("epoch", 0) < config.epochs and payload.get("steps_per_epoch", steps) != steps:
            raise ArtifactError(f"{ckpt_path} was trained with {payload['steps_per_epoch']} batches per epoch, the data now gives {steps}",
                                "resume with the same data and batch size, or start a new run directory (--out)")
        history = list(payload.get("history", []))
        resumed_from = int(payload["epoch"])
        complete = resumed_from >= config.epochs
        # with an EMA, "model" holds the average (what is deployed) and "training_model" the weights SGD moves on from
        model.load_state_dict(payload["training_model" if average is not None and not complete else "model"])
        if complete:
            say(f"{stage}: {ckpt_path.name} is complete ({resumed_from}/{config.epochs} epochs); nothing to train")
            return TrainResult(model.eval(), dict(payload.get("metrics", {})), history, ckpt_path, resumed_from, 0)
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        set_rng_state(payload["rng"])
        if average is not None:
            average.model.load_state_dict(payload["model"])
        say(f"{stage}: resuming from {ckpt_path.name} at epoch {resumed_from + 1}/{config.epochs}")
    else:
        seed_everything(config.seed)
        say(f"{stage}: training {config.epochs} epochs on {device} ({steps} batches/epoch, amp={amp}, "
            f"channels_last={channels_last})")

    start = resumed_from or 0
    base = {"spec": spec_dict, "classes": list(classes), "stage": stage, "config": config.to_dict(),
            "epochs": config.epochs, "steps_per_epoch": steps, "extra": plain(dict(extra or {})), "device": str(device), "amp": amp, "channels_last": channels_last,
            "torch_version": str(torch.__version__)}
    metrics: dict[str, Any] = {}
    with _deterministic(device):
        for epoch in range(start, config.epochs):
            record = _run_epoch(model, loader, epoch, config, device=device, steps=steps, loss_fn=loss_fn,
                                optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp=amp,
                                channels_last=channels_last, eval_fn=eval_fn, stage=stage, quiet=quiet, warm_new=warm_new,
                                average=average)
            history.append(record)
            metrics = _totals(history)
            weights = {"model": average.model.state_dict(), "training_model": model.state_dict()} if average is not None else {"model": model.state_dict()}
            payload = {**base, **weights, "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
                       "epoch": epoch + 1, "complete": epoch + 1 == config.epochs, "metrics": plain(metrics),
                       "history": plain(history)}
            save_checkpoint(ckpt_path, payload)
            say(_format_record(stage, record, config.epochs))
            if on_epoch_end is not None:
                on_epoch_end(record)
    if average is not None:
        model.load_state_dict(average.model.state_dict())  # the stage's result is the average
    return TrainResult(model.eval(), metrics, history, ckpt_path, resumed_from, config.epochs - start)


def _run_epoch(model: nn.Module, loader: Iterable, epoch: int, config: TrainConfig, *, device: torch.device,
               steps: int, loss_fn: LossFn, optimizer: torch.optim.Optimizer, scheduler: Any,
               scaler: torch.amp.GradScaler, amp: str, channels_last: bool, eval_fn: Optional[EvalFn],
               stage: str, quiet: bool, warm_new: Optional[NewNeuronWarmup] = None,
               average: Optional[WeightAverage] = None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)  # shuffle/augmentation = f(seed, epoch): what makes resume exact
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = counted = 0
    lr = optimizer.param_groups[0]["lr"]
    bar = tqdm(total=steps, desc=f"{stage} {epoch + 1}/{config.epochs}", unit="batch", disable=quiet,
               leave=True, dynamic_ncols=True)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        x = _to_device(x, device, channels_last)
        y = y.to(device, non_blocking=True)
        with _autocast(device, amp):
            out = loss_fn(model, x, y)
        loss, logits = out if isinstance(out, tuple) else (out, None)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if warm_new is not None:
            warm_new(epoch * steps + i)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)  # skipped (weights untouched) if the unscaled gradients hold inf/NaN
        scaler.update()  # ... and then the scale backs off by half
        scheduler.step()
        if average is not None:
            average.update(epoch * steps + i)
        n = int(y.shape[0])
        seen += n
        loss_sum += loss.detach().float() * n
        if logits is not None:
            correct += (logits.detach().argmax(1) == y).sum()
            counted += n
        bar.update(1)
        if not quiet and (i % 10 == 0 or i == steps - 1):  # .item() syncs the GPU: not every step
            elapsed = max(time.perf_counter() - t0, 1e-9)
            post = {"loss": f"{loss_sum.item() / seen:.3f}", "img/s": f"{seen / elapsed:.0f}"}
            if counted:
                post["acc"] = f"{correct.item() / counted:.3f}"
            bar.set_postfix(post, refresh=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if seen == 0:
        bar.close()
        raise DataError("the training loader yielded no batches this epoch", "check the data source")
    mean_loss = loss_sum.item() / seen
    if not math.isfinite(mean_loss):
        bar.close()
        raise ConfigError(f"training diverged in {stage} epoch {epoch + 1}: the loss is {mean_loss}",
                          "lower the learning rate (--lr) or add warmup (--warmup-epochs); the last good checkpoint is kept")
    record: dict[str, Any] = {"epoch": epoch + 1, "loss": mean_loss,
                              "train_acc": (correct.item() / counted) if counted else None,
                              "lr": lr, "seconds": seconds, "images_per_s": seen / seconds, "images": seen}
    if scaler.is_enabled():
        record["loss_scale"] = float(scaler.get_scale())  # halves at each skipped step, doubles after 2000 good ones
    if eval_fn is not None:
        t1 = time.perf_counter()
        scored = average.model if average is not None else model  # what the stage will save and hand on
        model.eval()
        with torch.no_grad():
            record.update({k: float(v) for k, v in eval_fn(scored).items()})
        model.train()
        record["eval_seconds"] = time.perf_counter() - t1
    if not quiet:
        post = {"loss": f"{mean_loss:.3f}", "img/s": f"{seen / seconds:.0f}"}
        for key, label in (("train_acc", "acc"), ("test_acc", "test_acc"), ("probe_clean_acc", "test_acc"), ("robust_probe_acc", "robust")):
            if record.get(key) is not None:
                post[label] = f"{record[key]:.3f}"
        bar.set_postfix(post, refresh=True)
    bar.close()
    return record


def _totals(history: list[dict[str, Any]]) -> dict[str, Any]:
    last = dict(history[-1])
    seconds = sum(r["seconds"] for r in history)
    images = sum(r.get("images", 0) for r in history)
    last["seconds_total"] = seconds  # training only; wall_seconds_total adds the per-epoch evaluation
    last["wall_seconds_total"] = seconds + sum(r.get("eval_seconds", 0.0) for r in history)
    last["images_per_s_mean"] = images / seconds if seconds > 0 else None
    last["epochs"] = len(history)
    return last


def _format_record(stage: str, r: Mapping[str, Any], epochs: int) -> str:
    parts = [f"{stage} epoch {r['epoch']}/{epochs}", f"loss {r['loss']:.4f}"]
    for key in ("train_acc", "test_acc", "robust_acc"):
        if r.get(key) is not None:
            parts.append(f"{key} {r[key]:.4f}")
    parts += [f"lr {r['lr']:.5g}", f"{r['seconds']:.1f}s", f"{r['images_per_s']:.0f} img/s"]
    return "  ".join(parts)


def _check_resumable(payload: Mapping[str, Any], path: Path, *, stage: str, spec: Mapping[str, Any],
                     config: TrainConfig) -> None:
    fix = "resume with the options the run was started with, or start a new run directory (--out)"
    if payload.get("stage") != stage:
        raise ArtifactError(f"{path} belongs to stage '{payload.get('stage')}', not '{stage}'", fix)
    if dict(payload["spec"]) != dict(spec):
        raise ArtifactError(f"{path} was written for a different model spec than the one being trained", fix)
    saved = _comparable(payload.get("config", {}))
    now = _comparable(config.to_dict())
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ[:4])
        raise ArtifactError(f"{path} was written with different training options ({shown})", fix)
    for key in ("optimizer", "scheduler", "rng", "epoch"):
        if key not in payload:
            raise ArtifactError(f"{path} has no '{key}' state, so it cannot be resumed", "start a new run directory (--out)")


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict for the resume check: device dropped, True/"auto" and False/"off" spelled alike."""
    out = {k: v for k, v in dict(config).items() if k not in _DEVICE_ONLY_FIELDS}
    for key, spell in (("amp", amp_mode), ("channels_last", channels_last_mode)):
        if isinstance(out.get(key), (bool, str)):
            try:
                out[key] = spell(out[key])
            except ConfigError:
                pass  # an unknown value stays as written and shows up as a difference
    return out
