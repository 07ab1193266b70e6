"""Mixed precision on the CPU: fp16 + GradScaler (as on a Xavier) and bf16, through the real trainer.

torch has CPU autocast for both dtypes and a CPU GradScaler, so everything but the CUDA kernels is
exercised here: the scaler's state and its checkpoint, exact resume, skipped steps on non-finite
gradients, channels_last. The CUDA run of the same path is tests/test_train.py's gpu test.
"""

from __future__ import annotations

import math

import pytest
import torch

from gear_trt.artifacts.checkpoint import load_checkpoint
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.train import TrainConfig, evaluate_accuracy
from gear_trt.train.loop import CrossEntropy, resolve_amp, resolve_channels_last
from test_train import TinyLoader, assert_same_state, fresh_model, run

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


class Probe(CrossEntropy):
    """The default loss, noting the dtype of the logits and the memory format of input and first conv."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()
        self.nhwc: set[bool] = set()

    def __call__(self, model, x, y):
        loss, logits = super().__call__(model, x, y)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        self.dtypes.add(logits.dtype)
        self.nhwc.add(x.is_contiguous(memory_format=torch.channels_last) and conv.weight.is_contiguous(memory_format=torch.channels_last))
        return loss, logits


def config(amp, epochs=3, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=0.05, seed=7, device="cpu", amp=amp, **kw)


def test_modes_resolve_per_device():
    assert [resolve_amp(v, CPU) for v in (True, "auto", False, "off", "fp16", "bf16")] == ["off", "off", "off", "off", "fp16", "bf16"]
    assert [resolve_amp(v, CUDA) for v in (True, "auto", "fp16", False)] == ["fp16", "fp16", "fp16", "off"]
    assert [resolve_channels_last(v, CPU) for v in (True, "auto", "on", False)] == [False, False, True, False]
    assert [resolve_channels_last(v, CUDA) for v in (True, "auto", "on", "off")] == [True, True, True, False]
    with pytest.raises(ConfigError, match="unknown AMP mode 'fp8'.*auto, off, fp16, bf16"):
        TrainConfig(epochs=1, amp="fp8").validate()
    with pytest.raises(ConfigError, match="channels_last"):
        TrainConfig(epochs=1, channels_last="nhwc").validate()


@pytest.mark.parametrize("amp, dtype, channels_last", [("fp16", torch.float16, "off"), ("bf16", torch.bfloat16, "on"),
                                                       (True, torch.float32, True)])
def test_autocast_runs_in_the_chosen_dtype_and_learns(tmp_path, amp, dtype, channels_last):
    probe = Probe()
    result = run(tmp_path, "a.pt", epochs=4, config=config(amp, epochs=4, channels_last=channels_last), loss_fn=probe)
    assert probe.dtypes == {dtype} and probe.nhwc == {channels_last == "on"}  # True = auto: fp32, NCHW on the CPU
    losses = [r["loss"] for r in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.2
    payload = load_checkpoint(tmp_path / "a.pt")
    assert payload["amp"] == {True: "off"}.get(amp, amp) and payload["channels_last"] is (channels_last == "on")
    if amp == "fp16":  # the scaler's state travels with the checkpoint, its scale is in the history
        assert set(payload["scaler"]) >= {"scale", "_growth_tracker"}
        assert [r["loss_scale"] for r in result.history][-1] == payload["scaler"]["scale"] <= 65536.0
    else:  # bf16 has fp32's range: no loss scaling
        assert payload["scaler"] == {} and "loss_scale" not in result.history[-1]


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_resume_after_interruption_is_bit_identical(tmp_path, amp):
    full = run(tmp_path, "full.pt", config=config(amp))

    class Killed(Exception):
        pass

    def kill_after_first(record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path, "part.pt", config=config(amp), on_epoch_end=kill_after_first)
    resumed = run(tmp_path, "part.pt", config=config(amp), model=fresh_model(seed=99))
    assert resumed.resumed_from == 1 and resumed.epochs_run == 2
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "part.pt")
    assert_same_state(a["optimizer"], b["optimizer"])
    assert a["scaler"] == b["scaler"]
    with pytest.raises(ArtifactError, match="different training options.*amp"):  # another precision is another run
        run(tmp_path, "part.pt", config=config("bf16" if amp == "fp16" else "fp16", epochs=4))


def test_old_spelling_of_the_defaults_still_resumes(tmp_path):
    """Checkpoints written before the modes existed say amp=True / channels_last=False: same run as auto / off."""
    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "c.pt", config=TrainConfig(epochs=2, lr=0.05, seed=7, amp=True, channels_last=False), on_epoch_end=stop)
    again = run(tmp_path, "c.pt", config=TrainConfig(epochs=2, lr=0.05, seed=7, amp="auto", channels_last="off"))
    assert again.resumed_from == 1 and again.epochs_run == 1


def poisoned_at(step: int):
    """The default loss, except that the gradients of step `step` (1-based) come out inf."""
    calls = {"n": 0}

    def loss_fn(model, x, y):
        loss, logits = CrossEntropy()(model, x, y)
        calls["n"] += 1
        if calls["n"] == step:
            logits.register_hook(lambda g: torch.full_like(g, float("inf")))
        return loss, logits

    return loss_fn


def test_nonfinite_gradients_skip_the_step_and_halve_the_scale(tmp_path):
    """One batch per epoch. Against the same run without poison: the poisoned step leaves the weights as
    they were and halves the scale; the clean run's same step updates them at an unchanged
    scale (its first steps back off from 65536 on their own); training goes on after the skip."""
    def train_recording(name, loss_fn):
        model, snaps = fresh_model(), []
        result = run(tmp_path, name, model=model, loader=TinyLoader(n=16, batch_size=16), loss_fn=loss_fn,
                     config=config("fp16", epochs=7, weight_decay=0.0),
                     on_epoch_end=lambda r: snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()
                                                          if v.is_floating_point() and "running" not in k}))
        return [r["loss_scale"] for r in result.history], snaps, result

    step = 5
    clean_scales, clean, _ = train_recording("clean.pt", None)
    scales, snaps, result = train_recording("poisoned.pt", poisoned_at(step))
    i = step - 1  # index of the poisoned epoch
    assert scales[:i] == clean_scales[:i] and all(torch.equal(clean[i - 1][k], snaps[i - 1][k]) for k in snaps[0])
    assert clean_scales[i] == clean_scales[i - 1] and not all(torch.equal(clean[i - 1][k], clean[i][k]) for k in clean[0])
    assert scales[i] == scales[i - 1] / 2 and all(torch.equal(snaps[i - 1][k], snaps[i][k]) for k in snaps[0])
    assert not all(torch.equal(snaps[i][k], snaps[i + 1][k]) for k in snaps[0])  # the next step goes through
    assert all(math.isfinite(r["loss"]) for r in result.history) and all(torch.isfinite(v).all() for v in snaps[-1].values())


def test_channels_last_on_the_cpu_matches_nchw(tmp_path):
    """Two fp32 steps NHWC vs NCHW: the same numbers up to the summation order of other kernels. (Longer
    runs drift apart as any two float orders do; this 3-channel VGG's bf16 gradients differ from fp32's
    by as much as from each other, so bf16 gets no numeric comparison here: the GPU check does that.)"""
    amp, tol = "off", 1e-4
    nchw, nhwc = Probe(), Probe()
    a = run(tmp_path, "a.pt", loader=TinyLoader(n=16, batch_size=16), config=config(amp, epochs=2, channels_last="off"), loss_fn=nchw)
    b = run(tmp_path, "b.pt", loader=TinyLoader(n=16, batch_size=16), config=config(amp, epochs=2, channels_last="on"), loss_fn=nhwc)
    assert nchw.nhwc == {False} and nhwc.nhwc == {True}
    assert load_checkpoint(tmp_path / "b.pt")["channels_last"] is True
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        if x.is_floating_point():
            assert torch.allclose(x, y, atol=tol, rtol=tol), (k, float((x - y).abs().max()))
    assert [r["loss"] for r in a.history] == pytest.approx([r["loss"] for r in b.history], rel=tol, abs=tol)


def test_evaluation_under_autocast_agrees_with_fp32(tmp_path):
    model = run(tmp_path, "e.pt", epochs=3).model
    loader = TinyLoader()
    fp32 = evaluate_accuracy(model, loader)
    assert abs(evaluate_accuracy(model, loader, amp="bf16", channels_last="on") - fp32) <= 2 / 64
    assert abs(evaluate_accuracy(model, loader, amp="fp16") - fp32) <= 1 / 64
