"""ERA (batched AugMix) and the JSD loss: determinism, per-image independence, ops against torchvision."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import AugMix, InterpolationMode
from torchvision.transforms import functional as TF

from gear_trt.data.era import ALL_OPS, ERA, ERAConfig, GEOMETRIC_OPS, MAX_SEVERITY, apply_op, magnitude_table
from gear_trt.errors import ConfigError
from gear_trt.train.jsd import JSD_WEIGHT, era_loss, jsd_loss

OP_INDEX = {op: i for i, op in enumerate(ALL_OPS)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small batches: one thread is faster than two contending ones, and torchvision's loop uses one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n: int, seed: int = 0, height: int = 32, width: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Photo-like uint8 images (smooth structure + noise), as uint8 NCHW and float [0, 1] NCHW."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, height // 4), max(2, width // 4), generator=g)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    img = (0.8 * smooth + 0.2 * torch.rand(n, 3, height, width, generator=g)).clamp(0, 1)
    u8 = (img * 255).round().to(torch.uint8)
    return u8, u8.float() / 255


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mix(era: ERA, x: torch.Tensor, seed: int) -> torch.Tensor:
    """ERA's single-view output (jsd=False) for a seeded CPU generator."""
    out = era(x, _gen(seed))
    assert isinstance(out, torch.Tensor)
    return out


# ---------------------------------------------------------------------------- determinism, shape


def test_same_seed_gives_identical_output_and_other_seeds_differ() -> None:
    _, x = _images(16)
    era = ERA()
    a, b, c = _mix(era, x, 7), _mix(era, x, 7), _mix(era, x, 8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_output_keeps_shape_dtype_device_range_and_leaves_input_alone() -> None:
    _, x = _images(12, height=24, width=40)
    before = x.clone()
    for config in (ERAConfig(), ERAConfig(width=3, severity=10), ERAConfig(fill=0.5, interpolation="nearest")):
        out = _mix(ERA(config), x, 0)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(x, before)
    out64 = _mix(ERA(), x.double(), 0)
    assert out64.dtype == torch.float64
    assert torch.allclose(out64.float(), _mix(ERA(), x, 0), atol=1e-5)


def test_empty_batch_and_bad_input() -> None:
    assert _mix(ERA(), torch.zeros(0, 3, 32, 32), 0).shape == (0, 3, 32, 32)
    with pytest.raises(ConfigError, match="float images"):
        ERA()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), _gen(0))
    with pytest.raises(ConfigError, match="float images"):
        ERA()(torch.zeros(3, 32, 32), _gen(0))


# ---------------------------------------------------------------------------- per-image independence


def test_copies_of_one_image_get_different_augmentations() -> None:
    _, x = _images(1)
    batch = x.expand(32, -1, -1, -1).contiguous()
    out = _mix(ERA(), batch, 3)
    # Like torchvision's AugMix, a chain can be a no-op (a bin-0 magnitude is 0), leaving the image as
    # it was; every image that did change got its own augmentation.
    changed = out[(out - batch).flatten(1).abs().amax(1) > 1e-6]
    assert len(changed) >= 24
    assert len(torch.unique(changed.flatten(1), dim=0)) == len(changed)
    choices = ERA().sample_choices(32, 32, 32, _gen(3))
    assert len({tuple(row.flatten()) for row in choices.op}) > 16  # op sequences vary per image
    assert len(set(choices.clean_weight.flatten().round(6))) == 32  # and so do the Beta blends


@pytest.mark.parametrize("config", [ERAConfig(), ERAConfig(width=3, depth=4, severity=6), ERAConfig(jsd=True, alpha=0.5)])
def test_an_image_output_depends_only_on_seed_index_and_pixels(config: ERAConfig) -> None:
    _, x = _images(9)
    era = ERA(config)

    def views(out: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        return list(out) if isinstance(out, tuple) else [out]

    full = views(era(x, _gen(11)))
    # A prefix of the batch draws the same random numbers, so it gets the same outputs.
    prefix = views(era(x[:4], _gen(11)))
    for a, b in zip(full, prefix):
        assert torch.allclose(a[:4], b, atol=1e-6)
    # Replacing every other image leaves image 2 unchanged.
    _, other = _images(9, seed=99)
    mixed_batch = other.clone()
    mixed_batch[2] = x[2]
    swapped = views(era(mixed_batch, _gen(11)))
    for a, b in zip(full, swapped):
        assert torch.allclose(a[2], b[2], atol=1e-6)
        assert not torch.allclose(a[5], b[5])


# ---------------------------------------------------------------------------- ops against torchvision


def test_magnitude_table_is_torchvisions_augmentation_space() -> None:
    names = {"shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX", "translate_y": "TranslateY",
             "rotate": "Rotate", "posterize": "Posterize", "solarize": "Solarize"}
    for height, width in ((32, 32), (24, 40), (27, 27)):
        space = AugMix(all_ops=False)._augmentation_space(MAX_SEVERITY, (height, width))
        table = magnitude_table(height, width)
        for op, tv_name in names.items():
            expected = space[tv_name][0].double().numpy()
            if op.startswith("translate"):
                expected = np.trunc(expected)  # torchvision's _apply_op translates by int(magnitude)
            np.testing.assert_allclose(table[OP_INDEX[op]], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("op", ["autocontrast", "equalize", "posterize", "solarize"])
def test_pixel_ops_match_torchvision_on_uint8(op: str) -> None:
    u8, x = _images(8)
    u8[0, 1] = 77  # a constant channel: autocontrast and equalize must leave it alone
    x = u8.float() / 255
    table = magnitude_table(32, 32)
    magnitudes = table[OP_INDEX[op]] if op in ("posterize", "solarize") else [0.0]
    for magnitude in sorted(set(magnitudes)):
        ours = apply_op(x, op, magnitude)
        if op == "posterize":
            ref = TF.posterize(u8, int(magnitude))
        elif op == "solarize":
            ref = TF.solarize(u8, float(magnitude))
        else:
            ref = torch.stack([getattr(TF, op)(img) for img in u8])
        diff = (ours - ref.float() / 255).abs()
        # torchvision truncates autocontrast's float result to uint8; ERA keeps the float.
        assert float(diff.mean()) < 1 / 255, (op, magnitude)
        assert float(diff.max()) <= (1.0 if op == "autocontrast" else 0.0) / 255 + 1e-6, (op, magnitude)
    if op in ("autocontrast", "equalize"):
        assert torch.equal(apply_op(x, op)[0, 1], x[0, 1])


def _torchvision_geometric(img: torch.Tensor, op: str, magnitude: float, mode: InterpolationMode) -> torch.Tensor:
    """torchvision's AugMix._apply_op for the geometric ops (fill None = 0)."""
    if op == "rotate":
        return TF.rotate(img, magnitude, interpolation=mode)
    shear = math.degrees(math.atan(magnitude))
    if op == "shear_x":
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[shear, 0.0], interpolation=mode, center=[0, 0])
    if op == "shear_y":
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, shear], interpolation=mode, center=[0, 0])
    translate = [int(magnitude), 0] if op == "translate_x" else [0, int(magnitude)]
    return TF.affine(img, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0], interpolation=mode)


@pytest.mark.parametrize("op", sorted(GEOMETRIC_OPS))
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_geometric_ops_match_torchvision_on_uint8(op: str, interpolation: str) -> None:
    u8, x = _images(6, height=24, width=40)
    mode = InterpolationMode(interpolation)
    table = magnitude_table(24, 40)
    for level in (2, 9):
        for sign in (1.0, -1.0):
            magnitude = sign * table[OP_INDEX[op], level]
            ours = apply_op(x, op, magnitude, interpolation=interpolation)
            ref = _torchvision_geometric(u8, op, magnitude, mode).float() / 255
            diff = (ours - ref).abs()
            assert float(diff.mean()) < 0.5 / 255, (op, magnitude)
            if interpolation == "bilinear":  # torchvision rounds its float result to uint8
                assert float(diff.max()) <= 0.5 / 255 + 1e-5, (op, magnitude)
            else:  # a sample point on a pixel boundary may round the other way in float
                assert float((diff > 1e-6).float().mean()) < 0.02, (op, magnitude)
            assert float((ours - x).abs().mean()) > 1 / 255  # the op really moved the image


def test_fill_value_is_used_outside_the_image() -> None:
    _, x = _images(2)
    out = apply_op(x, "translate_x", 3.0, fill=0.5)
    assert torch.allclose(out[..., :3], torch.full_like(out[..., :3], 0.5))
    assert torch.allclose(out[..., 3:], x[..., :-3], atol=1e-6)


# ---------------------------------------------------------------------------- mixing and random choices


def test_output_is_the_beta_blend_of_clean_and_chain() -> None:
    # autocontrast is idempotent, so every chain of it equals one application of it.
    _, x = _images(16)
    era = ERA(ERAConfig(width=2, ops=("autocontrast",)))
    choices = era.sample_choices(16, 32, 32, _gen(5))
    assert np.allclose(choices.clean_weight + choices.chain_weight.sum(-1), 1.0)
    out = _mix(era, x, 5)
    clean = torch.from_numpy(choices.clean_weight[:, 0]).float().view(-1, 1, 1, 1)
    expected = clean * x + (1 - clean) * apply_op(x, "autocontrast")
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_dirichlet_and_beta_weights_have_the_right_moments(alpha: float) -> None:
    n, width = 20000, 3
    choices = ERA(ERAConfig(width=width, alpha=alpha)).sample_choices(n, 32, 32, _gen(0))
    m = 1.0 - choices.clean_weight[:, 0]  # Beta(alpha, alpha): mean 1/2, var 1 / (4 (2 alpha + 1))
    assert abs(m.mean() - 0.5) < 0.01
    assert abs(m.var() / (1 / (4 * (2 * alpha + 1))) - 1) < 0.05
    w = choices.chain_weight[:, 0] / m[:, None]  # Dirichlet(alpha x 3): mean 1/3, var 2 / (9 (3 alpha + 1))
    assert np.allclose(w.sum(-1), 1.0)
    assert np.allclose(w.mean(0), 1 / 3, atol=0.01)
    assert np.allclose(w.var(0) / (2 / (9 * (3 * alpha + 1))), 1.0, atol=0.06)


def test_choices_are_uniform_over_ops_depths_and_levels() -> None:
    n = 6000
    choices = ERA(ERAConfig(depth=4, severity=5)).sample_choices(n, 32, 32, _gen(1))
    first_ops = choices.op[..., 0].ravel()  # every chain has a first op
    assert np.allclose(np.bincount(first_ops, minlength=9) / n, 1 / 9, atol=0.015)
    assert np.allclose(np.bincount(choices.depth.ravel(), minlength=5)[1:] / n, 1 / 4, atol=0.02)
    assert set(np.unique(choices.level)) == set(range(5))
    geometric = np.isin(choices.op, [OP_INDEX[o] for o in GEOMETRIC_OPS]) & (choices.magnitude != 0)
    assert abs((choices.magnitude[geometric] < 0).mean() - 0.5) < 0.02  # signs are fair
    assert np.all(choices.op[..., 1:][choices.depth[..., None] < np.arange(2, 5)] == -1)  # past the depth: no op


def test_width_depth_and_severity_take_effect() -> None:
    _, x = _images(64)
    era = ERA(ERAConfig(depth=1))
    assert era.sample_choices(8, 32, 32, _gen(0)).op.shape == (8, 1, 1, 1)
    fixed = ERA(ERAConfig(depth=5, random_depth=False)).sample_choices(64, 32, 32, _gen(0))
    assert np.all(fixed.depth == 5) and np.all(fixed.op >= 0)
    wide = ERA(ERAConfig(width=3))
    assert wide.sample_choices(8, 32, 32, _gen(0)).chain_weight.shape == (8, 1, 3)
    assert not torch.allclose(_mix(wide, x, 0), _mix(ERA(), x, 0))
    # Severity 1 draws only bin 0: every geometric op has magnitude 0, so nothing moves.
    still = _mix(ERA(ERAConfig(severity=1, ops=tuple(sorted(GEOMETRIC_OPS)))), x, 0)
    assert torch.allclose(still, x, atol=1e-5)
    change = [float((_mix(ERA(ERAConfig(severity=s)), x, 0) - x).abs().mean()) for s in (1, 3, 10)]
    assert change[0] < change[1] < change[2]
    only = ERA(ERAConfig(ops=("solarize", "posterize"))).sample_choices(64, 32, 32, _gen(0))
    assert set(np.unique(only.op)) <= {-1, OP_INDEX["solarize"], OP_INDEX["posterize"]}


def test_strength_matches_torchvision_augmix() -> None:
    u8, x = _images(256, seed=4)
    torch.manual_seed(0)
    reference = AugMix(severity=3, mixture_width=1, chain_depth=-1, all_ops=False)
    tv = torch.stack([reference(img) for img in u8]).float() / 255
    ours = _mix(ERA(), x, 0)
    tv_change, our_change = float((tv - x).abs().mean()), float((ours - x).abs().mean())
    assert abs(our_change / tv_change - 1) < 0.2, (our_change, tv_change)


def test_config_is_validated() -> None:
    for bad in (dict(width=0), dict(depth=0), dict(severity=0), dict(severity=11), dict(alpha=0.0),
                dict(ops=()), dict(ops=("rotate", "blur")), dict(fill=2.0), dict(interpolation="bicubic")):
        with pytest.raises(ConfigError):
            ERAConfig(**bad)  # type: ignore[arg-type]


def test_works_as_the_batch_loader_augment_hook() -> None:
    from gear_trt.data import BatchLoader, load_source

    ds = load_source("builtin", "train").subset(range(64))
    plain = BatchLoader(ds, 32, train=True, seed=3, augment=ERA())
    jsd = BatchLoader(ds, 32, train=True, seed=3, augment=ERA(ERAConfig(jsd=True)))

    def batches() -> list[torch.Tensor]:
        out = [x for x, _ in plain]
        assert all(isinstance(x, torch.Tensor) for x in out)
        return out  # type: ignore[return-value]

    first = batches()
    assert all(torch.equal(a, b) for a, b in zip(first, batches()))  # a pure function of (seed, epoch)
    plain.set_epoch(1)
    assert not torch.equal(batches()[0], first[0])
    views, labels = next(iter(jsd))
    assert isinstance(views, tuple) and len(views) == 3
    assert all(v.shape == (32, 3, 32, 32) for v in views) and labels.shape == (32,)


# ---------------------------------------------------------------------------- JSD


def test_jsd_mode_returns_clean_and_two_different_views() -> None:
    _, x = _images(8)
    clean, view1, view2 = ERA(ERAConfig(jsd=True))(x, _gen(0))
    assert torch.equal(clean, x)
    assert view1.shape == view2.shape == x.shape
    assert not torch.allclose(view1, view2)
    assert view1.is_contiguous() and view2.is_contiguous()


def test_jsd_loss_against_the_entropy_formula() -> None:
    g = _gen(0)
    logits = [torch.randn(32, 10, generator=g) * 3 for _ in range(3)]
    same = jsd_loss(logits[0], logits[0], logits[0])
    assert float(same.abs()) < 1e-6
    value = jsd_loss(*logits)
    # JS = H(M) - mean_i H(p_i), with M the mean distribution.
    probs = [torch.softmax(z.double(), dim=1) for z in logits]
    mixture = (probs[0] + probs[1] + probs[2]) / 3

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.log()).sum(dim=1)

    expected = (entropy(mixture) - sum(entropy(p) for p in probs) / 3).mean()
    assert value.ndim == 0 and float(value) > 0.01
    assert math.isclose(float(value), float(expected), rel_tol=1e-4)
    assert float(value) <= math.log(3)  # JS among 3 distributions is bounded by log 3

    targets = torch.randint(0, 10, (32,), generator=g)
    total = era_loss(logits[0], logits[1], logits[2], targets)
    assert math.isclose(float(total), float(F.cross_entropy(logits[0], targets) + JSD_WEIGHT * value), rel_tol=1e-6)
    leaf = logits[1].clone().requires_grad_(True)
    era_loss(logits[0], leaf, logits[2], targets, weight=12.0).backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and float(leaf.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------- device


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_output_matches_cpu_for_a_cpu_generator() -> None:
    _, x = _images(64)
    era = ERA(ERAConfig(width=3, jsd=True))
    cpu = era(x, _gen(2))
    gpu = era(x.cuda(), _gen(2))
    for a, b in zip(cpu, gpu):
        assert b.is_cuda
        # Same random choices; equalize/posterize may requantise a pixel differently after a warp.
        assert float((a - b.cpu()).abs().mean()) < 1e-4
