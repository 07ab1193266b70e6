"""Trainer, schedules and checkpoints: exact resume (after a real kill too), weights-only loading."""

from __future__ import annotations

import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from gear_trt.artifacts.checkpoint import load_checkpoint, plain, save_checkpoint
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.models import build_model, load_model, scaled_spec
from gear_trt.train import TrainConfig, evaluate_accuracy, train
from gear_trt.train.schedule import lr_factor

REPO = Path(__file__).resolve().parents[1]
SPEC = scaled_spec("vgg19", 0.05)

torch.set_num_threads(1)


class TinyLoader:
    """The BatchLoader protocol in miniature: (x, y) batches, len(), a shuffle that is f(seed, epoch).

    Images are noise plus a class-dependent colour, so a tiny net can learn them in a few epochs.
    """

    def __init__(self, n: int = 64, batch_size: int = 16, seed: int = 0, views: int = 1) -> None:
        g = torch.Generator().manual_seed(1234)
        self.y = torch.arange(n) % 10
        colours = torch.randn(10, 3, 1, 1, generator=g)
        self.x = 0.5 * torch.randn(n, 3, 32, 32, generator=g) + 2 * colours[self.y]
        self.batch_size, self.seed, self.views, self.epoch = batch_size, seed, views, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            # jitter from the global RNGs (torch, numpy, python), as an on-the-fly augmentation might
            jitter = 0.05 * torch.randn(len(idx), 1, 1, 1) * float(np.random.rand()) * random.random()
            x = self.x[idx] + jitter
            yield (tuple(x + 0.1 * k for k in range(self.views)) if self.views > 1 else x), self.y[idx]


def fresh_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(SPEC)


def run(tmp: Path, name: str, epochs: int = 3, **kwargs):
    config = kwargs.pop("config", None) or TrainConfig(epochs=epochs, lr=0.05, seed=7)
    return train(kwargs.pop("model", None) or fresh_model(), kwargs.pop("loader", None) or TinyLoader(), config,
                 ckpt_path=tmp / name, spec=SPEC, classes=[str(i) for i in range(10)], quiet=True, **kwargs)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], dict):
            assert_same_state(a[k], b[k])
        else:
            assert a[k] == b[k], k


# --- schedules ------------------------------------------------------------------------------------

def test_cosine_schedule_with_warmup():
    f = lambda s, **kw: lr_factor(s, steps_per_epoch=10, epochs=10, **kw)  # noqa: E731
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5)
    assert f(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    warm = [f(s, warmup_epochs=2) for s in range(20)]
    assert warm == pytest.approx([(s + 1) / 20 for s in range(20)])
    assert f(20, warmup_epochs=2) == 1.0
    assert f(60, warmup_epochs=2) == pytest.approx(0.5)  # halfway through the 80 post-warmup steps


def test_step_schedule_drops_at_milestones():
    factors = [lr_factor(e * 10, steps_per_epoch=10, epochs=8, schedule="step", milestones=(0.5, 0.75)) for e in range(8)]
    assert factors == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize("kwargs, word", [
    ({"schedule": "linear"}, "schedule"), ({"milestones": (0.8, 0.2), "schedule": "step"}, "milestones"),
    ({"warmup_epochs": 5}, "warmup"), ({"lr": -1.0}, "learning rate"), ({"epochs": 0}, "epochs"),
    ({"momentum": 0.0}, "nesterov"), ({"label_smoothing": 1.0}, "label smoothing"),
])
def test_bad_config_is_a_config_error(kwargs, word):
    config = TrainConfig(**{"epochs": 3, **kwargs})
    with pytest.raises(ConfigError, match=word):
        config.validate()


def test_config_round_trip():
    config = TrainConfig(epochs=5, schedule="step", milestones=(0.3, 0.6), label_smoothing=0.1)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown training options"):
        TrainConfig.from_dict({"epochs": 1, "lr_max": 3})


# --- the loop -------------------------------------------------------------------------------------

def test_training_learns_and_records_history(tmp_path):
    loader = TinyLoader()
    result = run(tmp_path, "a.pt", epochs=6, loader=loader,
                 config=TrainConfig(epochs=6, lr=0.01, seed=7, weight_decay=0.0),
                 eval_fn=lambda m: {"test_acc": evaluate_accuracy(m, loader)})
    hist = result.history
    assert [r["epoch"] for r in hist] == list(range(1, 7))
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.3
    assert hist[-1]["train_acc"] > 0.25  # chance is 0.1 (eval accuracy lags: BN running stats after 24 steps)
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in hist)
    assert all(r["images"] == 64 and r["images_per_s"] > 0 for r in hist)
    assert [r["lr"] for r in hist] == sorted((r["lr"] for r in hist), reverse=True)  # cosine decays
    assert result.metrics["epochs"] == 6 and result.metrics["test_acc"] == hist[-1]["test_acc"]
    assert result.resumed_from is None and result.epochs_run == 6
    payload = load_checkpoint(tmp_path / "a.pt")
    assert payload["format"] == "gear-trt-ckpt/1" and payload["complete"] and payload["epoch"] == 6
    assert payload["spec"] == SPEC.to_dict() and payload["classes"] == [str(i) for i in range(10)]
    assert payload["stage"] == "train" and payload["config"]["lr"] == 0.01 and len(payload["history"]) == 6


def test_evaluate_accuracy_matches_a_manual_count():
    loader = TinyLoader()
    model = fresh_model().eval()
    with torch.no_grad():
        manual = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader) / 64
    model.train()
    assert evaluate_accuracy(model, loader) == manual
    assert model.training  # the previous mode is restored


def test_same_seed_same_weights(tmp_path):
    a = run(tmp_path, "a.pt", epochs=2).model.state_dict()
    b = run(tmp_path, "b.pt", epochs=2).model.state_dict()
    assert_same_state(a, b)


def test_resume_after_interruption_is_bit_identical(tmp_path):
    full = run(tmp_path, "full.pt")

    class Killed(Exception):
        pass

    def kill_after_first(record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path, "part.pt", on_epoch_end=kill_after_first)
    assert load_checkpoint(tmp_path / "part.pt")["epoch"] == 1
    resumed = run(tmp_path, "part.pt", model=fresh_model(seed=99))  # different init: all state must come from the file
    assert resumed.resumed_from == 1 and resumed.epochs_run == 2
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "part.pt")
    assert_same_state(a["optimizer"], b["optimizer"])
    timing = ("seconds", "images_per_s", "seconds_total", "images_per_s_mean")
    strip = lambda r: {k: v for k, v in r.items() if k not in timing}  # noqa: E731
    assert [strip(r) for r in a["history"]] == [strip(r) for r in b["history"]]


# --- weight averaging (--ema) ----------------------------------------------------------------------

def test_ema_is_the_moving_average_of_the_weights_sgd_visited(tmp_path):
    """The saved and returned model is the EMA of the training trajectory, which itself is untouched."""
    seen: list[dict] = []

    def recording_loss(model, x, y):  # sees the weights (and BN statistics) after each previous step
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return torch.nn.functional.cross_entropy(model(x), y)

    loader, held_out = TinyLoader(), list(TinyLoader(seed=5))
    scores = lambda m: {"test_acc": evaluate_accuracy(m, held_out)}  # noqa: E731
    run(tmp_path, "plain.pt", epochs=2, loss_fn=recording_loss, loader=loader, eval_fn=scores)
    seen.clear()
    config = TrainConfig(epochs=2, lr=0.05, seed=7, ema=0.9)
    result = run(tmp_path, "ema.pt", loss_fn=recording_loss, config=config, loader=loader, eval_fn=scores)
    payload = load_checkpoint(tmp_path / "ema.pt")
    assert_same_state(payload["training_model"], load_checkpoint(tmp_path / "plain.pt")["model"])  # SGD's path is the same
    trajectory = seen[1:] + [payload["training_model"]]  # the weights after step 0, 1, ..., last
    expected = {k: v.clone() for k, v in seen[0].items()}
    for step, weights in enumerate(trajectory):
        d = min(0.9, (1 + step) / (10 + step))
        for k, v in weights.items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    for k, v in payload["model"].items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6, msg=k)
    assert_same_state(result.model.state_dict(), payload["model"])
    assert result.history[-1]["test_acc"] == evaluate_accuracy(result.model, held_out)  # the epoch's figure is the average's
    assert not torch.equal(payload["model"]["features.0.weight"], payload["training_model"]["features.0.weight"])
    assert "ema" not in TrainConfig(epochs=1).to_dict() and TrainConfig.from_dict(config.to_dict()) == config


def test_resume_with_ema_is_bit_identical(tmp_path):
    config = TrainConfig(epochs=3, lr=0.05, seed=7, ema=0.95)
    full = run(tmp_path, "full.pt", config=config)

    def kill_after_first(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "part.pt", config=config, on_epoch_end=kill_after_first)
    resumed = run(tmp_path, "part.pt", config=config, model=fresh_model(seed=99))
    assert resumed.resumed_from == 1
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "part.pt")
    assert_same_state(a["training_model"], b["training_model"])
    again = run(tmp_path, "part.pt", config=config, model=fresh_model(seed=99))  # complete: the average is loaded
    assert again.epochs_run == 0
    assert_same_state(again.model.state_dict(), a["model"])


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import TinyLoader, run
    from pathlib import Path
    torch.set_num_threads(1)
    steps = [0]
    def loss_then_kill(model, x, y):
        steps[0] += 1
        if steps[0] == 6:  # epoch 1 has 4 steps: die in the middle of epoch 2, after checkpoint 1
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.nn.functional.cross_entropy(model(x), y)
    run(Path({tmp!r}), "killed.pt", loss_fn=loss_then_kill)
""")


def test_resume_after_sigkill_mid_epoch_is_bit_identical(tmp_path):
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "killed.pt")["epoch"] == 1  # the atomic write left a good checkpoint
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    plain_ce = lambda m, x, y: torch.nn.functional.cross_entropy(m(x), y)  # noqa: E731
    resumed = run(tmp_path, "killed.pt", loss_fn=plain_ce)
    full = run(tmp_path, "full.pt", loss_fn=plain_ce)
    assert resumed.resumed_from == 1
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())


def test_complete_checkpoint_is_loaded_not_retrained(tmp_path):
    first = run(tmp_path, "a.pt", epochs=2)
    again = run(tmp_path, "a.pt", epochs=2, model=fresh_model(seed=5))
    assert again.epochs_run == 0 and again.resumed_from == 2
    assert_same_state(first.model.state_dict(), again.model.state_dict())
    assert again.history == first.history


def test_resume_refuses_a_different_run(tmp_path):
    run(tmp_path, "a.pt", epochs=2)
    with pytest.raises(ArtifactError, match=r"different training options \(lr"):
        run(tmp_path, "a.pt", config=TrainConfig(epochs=2, lr=0.2, seed=7))
    with pytest.raises(ArtifactError, match="belongs to stage 'train', not 'grown'"):
        run(tmp_path, "a.pt", epochs=2, stage="grown")
    half_done = {**load_checkpoint(tmp_path / "a.pt"), "epoch": 1, "complete": False}
    save_checkpoint(tmp_path / "b.pt", half_done)
    with pytest.raises(ArtifactError, match="4 batches per epoch, the data now gives 2"):
        run(tmp_path, "b.pt", epochs=2, loader=TinyLoader(batch_size=32))  # same options, other data
    fresh = run(tmp_path, "a.pt", config=TrainConfig(epochs=1, lr=0.2, seed=7), resume=False)
    assert fresh.resumed_from is None and load_checkpoint(tmp_path / "a.pt")["config"]["lr"] == 0.2


def test_divergence_is_reported_and_the_last_good_checkpoint_kept(tmp_path):
    calls = [0]

    def loss_goes_nan(model, x, y):
        calls[0] += 1
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return loss * float("nan") if calls[0] > 4 else loss

    with pytest.raises(ConfigError, match="diverged in train epoch 2"):
        run(tmp_path, "a.pt", loss_fn=loss_goes_nan)
    assert load_checkpoint(tmp_path / "a.pt")["epoch"] == 1


def test_loss_hook_receives_every_view(tmp_path):
    seen = []

    def hook(model, x, y):
        seen.append(len(x))
        return sum(torch.nn.functional.cross_entropy(model(v), y) for v in x) / len(x)

    result = run(tmp_path, "a.pt", epochs=1, loader=TinyLoader(views=3), loss_fn=hook)
    assert seen == [3] * 4
    assert result.history[0]["train_acc"] is None  # the hook returned no logits


def test_label_smoothing_changes_the_loss(tmp_path):
    a = run(tmp_path, "a.pt", epochs=1).history[0]["loss"]
    b = run(tmp_path, "b.pt", config=TrainConfig(epochs=1, lr=0.05, seed=7, label_smoothing=0.2)).history[0]["loss"]
    assert a != b


# --- checkpoints ----------------------------------------------------------------------------------

def test_load_model_round_trip(tmp_path):
    model = run(tmp_path, "a.pt", epochs=1).model
    loaded, spec, payload = load_model(tmp_path / "a.pt")
    assert spec == SPEC and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    evil = _Evil()
    evil.marker = tmp_path / "pwned"
    torch.save({"format": "gear-trt-ckpt/1", "spec": SPEC.to_dict(), "model": {}, "x": evil}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError, match="refused by the weights-only loader"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not evil.marker.exists()
    with open(tmp_path / "legacy.pt", "wb") as f:  # a plain (non-zip) pickle
        pickle.dump(evil, f)
    with pytest.raises(ArtifactError):
        load_checkpoint(tmp_path / "legacy.pt")
    assert not evil.marker.exists()


def test_truncated_missing_and_foreign_files(tmp_path):
    save_checkpoint(tmp_path / "ok.pt", {"spec": SPEC.to_dict(), "model": build_model(SPEC).state_dict()})
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ArtifactError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(ArtifactError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ArtifactError, match="not a gear-trt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    bad = build_model(scaled_spec("vgg19", 0.1)).state_dict()
    save_checkpoint(tmp_path / "mismatch.pt", {"spec": SPEC.to_dict(), "model": bad})
    with pytest.raises(ArtifactError, match="weights do not match its spec"):
        load_model(tmp_path / "mismatch.pt")


def test_plain_makes_values_weights_only_safe(tmp_path):
    value = plain({"v": torch.__version__, "p": tmp_path, "n": np.float32(0.5), "a": np.arange(3), "t": (1, "x")})
    save_checkpoint(tmp_path / "p.pt", {"spec": SPEC.to_dict(), "model": {}, "extra": value})
    extra = load_checkpoint(tmp_path / "p.pt")["extra"]
    assert extra["v"] == str(torch.__version__) and extra["p"] == str(tmp_path) and extra["n"] == 0.5
    assert torch.equal(extra["a"], torch.arange(3)) and extra["t"] == (1, "x")
    with pytest.raises(TypeError, match="cannot store a object"):
        plain({"x": object()})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_channels_last_on_cuda(tmp_path):
    result = run(tmp_path, "cuda.pt", epochs=2, config=TrainConfig(epochs=2, lr=0.05, device="cuda"))
    payload = load_checkpoint(tmp_path / "cuda.pt")
    assert payload["amp"] == "fp16" and payload["channels_last"] is True and payload["device"].startswith("cuda")
    assert math.isfinite(result.history[-1]["loss"]) and "scaler" in payload
    loaded, _, _ = load_model(tmp_path / "cuda.pt")  # CUDA-written checkpoints load on the CPU
    assert next(loaded.parameters()).device.type == "cpu"
