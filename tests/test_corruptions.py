"""Corruption benchmark: fidelity to the official generator, determinism, ranges, metrics, loaders.

The fidelity reference (tests/data/corruption_reference.json) holds statistics of the official
generator (hendrycks/robustness make_cifar_c.py / make_tinyimagenet_c.py) on fixed CIFAR-10 test
images, recorded by tools/compare_official_corruptions.py. Only numbers are stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gear_trt.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRAS,
    PRESETS,
    CorruptionResults,
    corrupt,
    mce,
    relative_mce,
    sweep,
)
from gear_trt.corruptions.cifar_c import available, evaluate_cifar_c, load_cifar_c
from gear_trt.corruptions.metrics import distortion_stats
from gear_trt.errors import ArtifactError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "data" / "corruption_reference.json"
MOTION = REPO / "tests" / "data" / "magick_motion_blur.npz"
ZIPS = [REPO / "gear_trt" / "data" / "builtin" / "cifar10-subset.zip", REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"]
PSNR_TOLERANCE_DB = 1.0
MAD_TOLERANCE = 0.15


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def clean(reference: dict) -> np.ndarray:
    """The CIFAR-10 test images the reference statistics were recorded on."""
    from PIL import Image

    names = reference["images"]["names"]
    for path in ZIPS:
        if path.is_file():
            with zipfile.ZipFile(path) as z:
                if set(names) <= set(z.namelist()):
                    images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
                    break
    else:
        pytest.skip("the reference CIFAR-10 test images are in neither the built-in zip nor ../shared/data")
    assert hashlib.sha256(images.tobytes()).hexdigest() == reference["images"]["sha256_pixels"], \
        "decoded reference images differ from those the statistics were recorded on"
    return images


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def check_fidelity(reference: dict, preset: str, clean: np.ndarray, names: list[str]) -> None:
    stats = reference["presets"][preset]["stats"]
    failures = []
    for name in names:
        for s in range(1, 6):
            psnr, mad = distortion_stats(clean, corrupt(clean, name, s, preset=preset))
            ref = stats[name][str(s)]
            if abs(psnr - ref["psnr"]) > PSNR_TOLERANCE_DB or abs(mad - ref["mad"]) > MAD_TOLERANCE * ref["mad"]:
                failures.append(f"{name} {s}: PSNR {psnr:.2f} vs official {ref['psnr']:.2f} dB, "
                                f"MAD {mad:.2f} vs official {ref['mad']:.2f}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- fidelity


@pytest.mark.parametrize("group", [ALL_CORRUPTIONS[i: i + 5] for i in range(0, len(ALL_CORRUPTIONS), 5)],
                         ids=lambda g: f"{g[0]}..{g[-1]}")
def test_fidelity_cifar(reference: dict, clean: np.ndarray, group: tuple[str, ...]) -> None:
    """PSNR within 1 dB and mean absolute difference within 15% of the official CIFAR-10-C
    generator's, for every corruption and severity, on the same 200 CIFAR-10 test images."""
    check_fidelity(reference, "cifar", clean, list(group))


@pytest.mark.slow
def test_fidelity_tinyimagenet(reference: dict, clean: np.ndarray) -> None:
    """The same bounds for the Tiny-ImageNet-C constants, on the images upscaled to 64x64."""
    check_fidelity(reference, "tinyimagenet", upscale(clean, 64), list(ALL_CORRUPTIONS))


def test_reference_covers_every_corruption(reference: dict) -> None:
    for preset in ("cifar", "tinyimagenet"):
        stats = reference["presets"][preset]["stats"]
        assert set(stats) == set(ALL_CORRUPTIONS)
        assert all(set(stats[n]) == {"1", "2", "3", "4", "5"} for n in stats)


def test_severity_ordering_follows_the_official(reference: dict, clean: np.ndarray) -> None:
    """Distortion grows with severity wherever it does in the official generator (most
    corruptions); where the official constants make it shrink (elastic, frost 3-5) it shrinks too."""
    stats = reference["presets"]["cifar"]["stats"]
    images = clean[::2]
    checked = 0
    for name in ALL_CORRUPTIONS:
        mads = [distortion_stats(images, corrupt(images, name, s))[1] for s in range(1, 6)]
        official = [stats[name][str(s)]["mad"] for s in range(1, 6)]
        for s in range(4):
            step = official[s + 1] - official[s]
            if abs(step) > 0.08 * official[s]:
                assert np.sign(mads[s + 1] - mads[s]) == np.sign(step), f"{name}: MAD by severity {mads} vs official {official}"
                checked += 1
        if name in ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "zoom_blur", "fog",
                    "brightness", "contrast", "pixelate", "speckle_noise", "gaussian_blur"):
            assert mads == sorted(mads), f"{name} should distort more at each severity: {mads}"
    assert checked >= 50


# ---------------------------------------------------------------- exactness where there is no randomness


def test_pixelate_and_jpeg_match_pillow_exactly(clean: np.ndarray) -> None:
    from PIL import Image

    images = clean[:20]
    for s, factor in enumerate(PRESETS["cifar"]["pixelate"], start=1):
        side = int(32 * factor)
        expected = np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BOX).resize((32, 32), Image.BOX))
                             for im in images])
        np.testing.assert_array_equal(corrupt(images, "pixelate", s), expected)
    for s, quality in enumerate(PRESETS["cifar"]["jpeg_compression"], start=1):
        expected = []
        for im in images:
            buffer = io.BytesIO()
            Image.fromarray(im).save(buffer, "JPEG", quality=quality)
            expected.append(np.asarray(Image.open(buffer).convert("RGB")))
        np.testing.assert_array_equal(corrupt(images, "jpeg_compression", s), np.stack(expected))


def test_blurs_match_scipy(clean: np.ndarray) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    images = clean[:10]
    x = images / 255.0
    for s, sigma in enumerate(PRESETS["cifar"]["gaussian_blur"], start=1):
        expected = np.uint8(np.clip(ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="nearest"), 0, 1) * 255)
        ours = corrupt(images, "gaussian_blur", s).astype(int)
        assert np.abs(ours - expected).max() <= 1 and (ours == expected).mean() > 0.99
    # zoom blur: the official clipped_zoom is scipy.ndimage.zoom(order=1) of a centre crop
    factors = PRESETS["cifar"]["zoom_blur"][2]
    xf = x.astype(np.float32)
    out = np.zeros_like(xf)
    for f in factors:
        crop = int(np.ceil(32 / f))
        top = (32 - crop) // 2
        zoomed = ndimage.zoom(xf[:, top:top + crop, top:top + crop], (1, f, f, 1), order=1)
        trim = (zoomed.shape[1] - 32) // 2
        out += zoomed[:, trim:trim + 32, trim:trim + 32]
    expected = np.uint8(np.clip((xf + out) / (len(factors) + 1), 0, 1) * 255)
    ours = corrupt(images, "zoom_blur", 3).astype(int)
    assert np.abs(ours - expected).max() <= 1 and (ours == expected).mean() > 0.99


def test_motion_blur_kernel_matches_imagemagick() -> None:
    """Our ImageMagick MotionBlurImage re-implementation against ImageMagick's own output: the
    same kernel, offsets, edge rule and rounding, so all but a handful of values (float32 sums
    landing across a rounding edge) are identical, and none is more than 1 level off."""
    from gear_trt.corruptions._ops import magick_motion_blur

    data = np.load(MOTION)
    x = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float()
    for (radius, sigma, angle), expected in zip(data["settings"], data["blurred"]):
        out = magick_motion_blur(x, radius, sigma, torch.full((len(x),), angle, dtype=torch.float64))
        diff = np.abs(out.permute(0, 2, 3, 1).numpy() - expected)
        assert diff.max() <= 1 and (diff > 0).mean() < 5e-4, f"radius {radius} sigma {sigma} angle {angle}"


@pytest.mark.parametrize("delta,side", [(1, 32), (2, 20)])
def test_glass_shuffle_replays_the_official_copy_walk(delta: int, side: int) -> None:
    """The official loop's tuple 'swap' of numpy row views copies instead of swapping; our
    vectorised index map must give exactly what that loop does to an image."""
    from gear_trt.corruptions.blur import glass_shuffle_map

    rng = np.random.default_rng(delta)
    steps = (side - 2 * delta) ** 2
    shifts = rng.integers(-delta, delta, (2, 2, steps, 2))
    image = rng.integers(0, 256, (side, side, 3))
    walked = image.copy()
    for k in range(2):
        t = 0
        for h in range(side - delta, delta, -1):
            for w in range(side - delta, delta, -1):
                dx, dy = shifts[0, k, t]
                t += 1
                walked[h, w], walked[h + dy, w + dx] = walked[h + dy, w + dx], walked[h, w]
    index = glass_shuffle_map(shifts, side, side, delta)
    np.testing.assert_array_equal(image.reshape(-1, 3)[index[0]], walked.reshape(-1, 3))


# ---------------------------------------------------------------- determinism, types, ranges


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_deterministic_batch_independent_and_typed(clean: np.ndarray, name: str) -> None:
    images = clean[:12]
    severity = 3
    whole = corrupt(images, name, severity, seed=7)
    assert isinstance(whole, np.ndarray) and whole.dtype == np.uint8 and whole.shape == images.shape
    np.testing.assert_array_equal(corrupt(images, name, severity, seed=7), whole)
    halves = np.concatenate([corrupt(images[:5], name, severity, seed=7),
                             corrupt(images[5:], name, severity, seed=7, index_offset=5)])
    np.testing.assert_array_equal(halves, whole)
    shuffled = [9, 2, 11, 0]
    np.testing.assert_array_equal(corrupt(images[shuffled], name, severity, seed=7, indices=shuffled), whole[shuffled])
    tensor = corrupt(torch.from_numpy(images), name, severity, seed=7)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.uint8
    np.testing.assert_array_equal(tensor.numpy(), whole)
    single = corrupt(images[4], name, severity, seed=7, index_offset=4)
    np.testing.assert_array_equal(single, whole[4])
    assert not np.array_equal(whole, images), f"{name} left the images unchanged"


RANDOM_CORRUPTIONS = [n for n in ALL_CORRUPTIONS if n not in (
    "defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression", "gaussian_blur", "saturate")]


@pytest.mark.parametrize("name", RANDOM_CORRUPTIONS)
def test_seed_changes_random_corruptions(clean: np.ndarray, name: str) -> None:
    images = clean[:8]
    assert not np.array_equal(corrupt(images, name, 4, seed=0), corrupt(images, name, 4, seed=1))


@pytest.mark.gpu
def test_cuda_gives_the_cpu_images(clean: np.ndarray) -> None:
    """Randomness is drawn on the CPU per image, so a CUDA batch sees the same corruption; only
    float rounding at the uint8 truncation may differ."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    images = torch.from_numpy(clean[:16])
    for name in ALL_CORRUPTIONS:
        cpu = corrupt(images, name, 3).int()
        gpu = corrupt(images.cuda(), name, 3)
        assert gpu.is_cuda and gpu.dtype == torch.uint8
        diff = (gpu.cpu().int() - cpu).abs()
        assert diff.float().mean() < 0.05 and (diff > 1).float().mean() < 0.01, name


def test_extreme_images_stay_in_range() -> None:
    """All-black, all-white and saturated-colour images go through every corruption without
    errors, NaNs or wrap-around (results are uint8 by construction; check they stay sensible)."""
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[1] = 255
    images[2, ..., 0] = 255
    images[3] = np.arange(32, dtype=np.uint8)[:, None, None] * 8
    for name in ALL_CORRUPTIONS:
        for s in (1, 5):
            out = corrupt(images, name, s)
            assert out.dtype == np.uint8 and out.shape == images.shape
            if name in ("contrast", "pixelate", "zoom_blur", "defocus_blur", "gaussian_blur", "motion_blur"):
                assert (out[1] >= 250).all(), f"{name} {s} darkened a white image"
                assert (out[0] <= 5).all(), f"{name} {s} brightened a black image"


def test_tinyimagenet_preset_on_64px_images() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    for name in ALL_CORRUPTIONS:
        out = corrupt(images, name, 5, preset="tinyimagenet")
        assert out.shape == images.shape and out.dtype == np.uint8


def test_empty_batch_and_bad_inputs() -> None:
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    assert corrupt(empty, "fog", 1).shape == empty.shape
    image = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="unknown corruption"):
        corrupt(image, "rain", 1)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(ConfigError, match="severity"):
            corrupt(image, "fog", severity)
    with pytest.raises(ConfigError, match="preset"):
        corrupt(image, "fog", 1, preset="imagenet")
    with pytest.raises(DataError, match="uint8"):
        corrupt(image.astype(np.float32), "fog", 1)
    with pytest.raises(DataError, match=r"\[N, H, W, 3\]"):
        corrupt(np.zeros((2, 3, 32, 32), np.uint8), "fog", 1)
    with pytest.raises(ConfigError, match="indices"):
        corrupt(image, "fog", 1, indices=[0])


def test_frost_assets_and_licence_are_shipped() -> None:
    assets = REPO / "gear_trt" / "corruptions" / "assets"
    assert "Apache License" in (assets / "LICENSE").read_text()
    assert "hendrycks/robustness" in (assets / "README.md").read_text()
    total = sum(p.stat().st_size for p in assets.iterdir())
    assert total < 3 * 1024 * 1024
    from gear_trt.corruptions.weather import frost_photos

    photos = frost_photos(0.2)
    assert [tuple(p.shape[1:]) for p in photos] == [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]


# ---------------------------------------------------------------- metrics


def results(clean_acc: float, base: float, extras: float = 0.3, model: str = "m") -> CorruptionResults:
    acc = {c: {s: base - 0.01 * s - 0.001 * i for s in range(1, 6)} for i, c in enumerate(CORRUPTIONS)}
    return CorruptionResults(clean_acc=clean_acc, acc=acc, extras={e: {s: extras for s in range(1, 6)} for e in EXTRAS},
                             model=model, n_images=100)


def test_mean_corruption_accuracy_excludes_extras() -> None:
    r = results(0.9, 0.7, extras=0.0)
    expected = np.mean([r.acc[c][s] for c in CORRUPTIONS for s in range(1, 6)])
    assert r.mean_corruption_acc == pytest.approx(expected)
    assert r.extras_mean_acc == 0.0
    assert r.complete
    assert r.corruption_acc("fog") == pytest.approx(np.mean(list(r.acc["fog"].values())))
    del r.acc["fog"][5]
    assert not r.complete


def test_mce_and_relative_mce_by_hand() -> None:
    ref = CorruptionResults(clean_acc=0.8, acc={"fog": {1: 0.6, 2: 0.4}, "snow": {1: 0.5, 2: 0.5}}, model="baseline")
    mine = CorruptionResults(clean_acc=0.9, acc={"fog": {1: 0.8, 2: 0.7}, "snow": {1: 0.7, 2: 0.6}})
    ce_fog = (0.2 + 0.3) / (0.4 + 0.6)
    ce_snow = (0.3 + 0.4) / (0.5 + 0.5)
    assert mce(mine, ref) == pytest.approx((ce_fog + ce_snow) / 2)
    rce_fog = ((0.2 - 0.1) + (0.3 - 0.1)) / ((0.4 - 0.2) + (0.6 - 0.2))
    rce_snow = ((0.3 - 0.1) + (0.4 - 0.1)) / ((0.5 - 0.2) + (0.5 - 0.2))
    assert relative_mce(mine, ref) == pytest.approx((rce_fog + rce_snow) / 2)
    assert mine.summary(ref)["reference"] == "baseline"
    with pytest.raises(ConfigError, match="no snow results"):
        mce(mine, CorruptionResults(clean_acc=0.8, acc={"fog": {1: 0.6, 2: 0.4}}, model="partial"))


def test_results_json_round_trip(tmp_path: Path) -> None:
    r = results(0.91, 0.75)
    path = tmp_path / "robust.json"
    r.save(path)
    back = CorruptionResults.load(path)
    assert back == r
    data = json.loads(path.read_text())
    assert data["mean_corruption_acc"] == pytest.approx(r.mean_corruption_acc)
    assert set(data["extras"]) == set(EXTRAS) and not set(data["acc"]) & set(EXTRAS)
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ArtifactError, match="not a corruption results file"):
        CorruptionResults.load(path)


# ---------------------------------------------------------------- sweep


def brightness_classifier(images: torch.Tensor) -> torch.Tensor:
    """A fixed toy model: class = mean brightness bucket (10 classes)."""
    level = images.float().mean(dim=(1, 2, 3)) / 25.6
    return torch.nn.functional.one_hot(level.long().clamp(0, 9), 10).float()


def test_sweep_matches_direct_evaluation_and_ignores_batching(clean: np.ndarray) -> None:
    images = torch.from_numpy(clean[:40])
    labels = brightness_classifier(images).argmax(1)
    labels[::3] = (labels[::3] + 1) % 10  # clean accuracy 2/3 by construction
    names = ("contrast", "fog", "saturate")
    a = sweep(brightness_classifier, images, labels, corruptions=names, severities=(1, 5), batch_size=7, seed=3,
              progress=False)
    b = sweep(brightness_classifier, images, labels, corruptions=names, severities=(1, 5), batch_size=40, seed=3,
              progress=False)
    assert a == b
    assert a.clean_acc == pytest.approx(float((brightness_classifier(images).argmax(1) == labels).float().mean()))
    foggy = corrupt(images, "fog", 5, seed=3)
    assert a.acc["fog"][5] == pytest.approx(float((brightness_classifier(foggy).argmax(1) == labels).float().mean()))
    assert set(a.acc) == {"contrast", "fog"} and set(a.extras) == {"saturate"}
    assert a.mean_corruption_acc == pytest.approx(np.mean([a.acc[c][s] for c in ("contrast", "fog") for s in (1, 5)]))


def test_sweep_subset_uses_full_set_indices(clean: np.ndarray) -> None:
    images = torch.from_numpy(clean[:30])
    labels = torch.zeros(30, dtype=torch.long)
    seen = []

    def record(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.clone())
        return brightness_classifier(batch)

    r = sweep(record, images, labels, corruptions=("gaussian_noise",), severities=(2,), subset=[4, 17], progress=False)
    assert r.n_images == 2
    np.testing.assert_array_equal(seen[1].numpy(), corrupt(clean[[4, 17]], "gaussian_noise", 2, indices=[4, 17]))
    with pytest.raises(DataError, match="logits"):
        sweep(lambda b: torch.zeros(len(b)), images, labels, corruptions=("fog",), progress=False)


# ---------------------------------------------------------------- official CIFAR-C files


def fake_cifar_c(root: Path, n: int = 4) -> np.ndarray:
    """A tiny release in the official layout: image k of severity s is filled with its label."""
    labels = np.tile(np.arange(n) % 10, 5).astype(np.uint8)
    images = np.zeros((5 * n, 32, 32, 3), np.uint8)
    for s in range(5):
        for k in range(n):
            images[s * n + k] = 30 * labels[k] if s < 4 or k % 2 else 255  # severity 5: half destroyed
    np.save(root / "fog.npy", images)
    np.save(root / "saturate.npy", images)
    np.save(root / "labels.npy", labels)
    return labels


def label_reader(images: torch.Tensor) -> torch.Tensor:
    value = images[:, 0, 0, 0].long() // 30
    return torch.nn.functional.one_hot(value.clamp(0, 9), 10).float()


def test_cifar_c_loader_and_evaluation(tmp_path: Path) -> None:
    labels = fake_cifar_c(tmp_path)
    assert available(tmp_path) == ["fog", "saturate"]
    images, lab = load_cifar_c(tmp_path, "fog", 2)
    assert images.shape == (4, 32, 32, 3) and lab.dtype == np.int64
    np.testing.assert_array_equal(lab, labels[4:8])
    everything, _ = load_cifar_c(tmp_path, "fog")
    assert everything.shape[0] == 20
    clean = (torch.full((4, 32, 32, 3), 0, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    r = evaluate_cifar_c(label_reader, tmp_path, clean=clean, batch_size=3, progress=False)
    assert r.acc["fog"] == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.5}
    assert r.extras["saturate"][5] == 0.5 and r.clean_acc == 1.0 and r.source == "official-npy"
    with pytest.raises(DataError, match="does not exist"):
        available(tmp_path / "nowhere")
    with pytest.raises(DataError, match="missing"):
        load_cifar_c(tmp_path, "snow", 1)
    np.save(tmp_path / "labels.npy", np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="multiple of 5"):
        load_cifar_c(tmp_path, "fog", 1)


def test_grid_picture(clean: np.ndarray) -> None:
    from gear_trt.corruptions.grid import grid_image

    picture = grid_image(clean[0], corruptions=("fog", "snow"), extras=("spatter",), scale=2)
    assert picture.size[0] > 6 * 64 and picture.size[1] > 3 * 64
    pixels = np.asarray(picture)
    assert pixels.std() > 10  # not blank
