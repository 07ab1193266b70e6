"""gear_trt.data: every source (builtin, CIFAR pickles, folder, zip), broken files, the packed cache, the loader."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gear_trt.artifacts.meta import CIFAR_MEAN, CIFAR_STD
from gear_trt.data import (
    BatchLoader,
    BrokenImagesWarning,
    ImageSet,
    load_source,
    normalize,
    normalize_float,
    random_crop_flip,
    resize_images,
)
from gear_trt.data import sources as sources_module
from gear_trt.errors import ConfigError, DataError

SHARED_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.zip"
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own packed cache, never ~/.cache."""
    monkeypatch.setenv("GEAR_TRT_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _png_bytes(pixels: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_tree(root: Path, counts: dict[str, dict[str, int]], size: tuple[int, int] = (8, 8), seed: int = 0) -> dict[str, np.ndarray]:
    """PNG files root/<split>/<class>/<i>.png with random pixels; returns {relative name: pixels}."""
    rng = np.random.default_rng(seed)
    expected = {}
    for split, classes in counts.items():
        for cls, n in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                (folder / f"{i:03d}.png").write_bytes(_png_bytes(pixels))
                expected[f"{split}/{cls}/{i:03d}.png"] = pixels
    return expected


def zip_tree(root: Path, target: Path, top: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, top + path.relative_to(root).as_posix())
    return target


COUNTS = {"train": {"dog": 3, "ant": 2, "cat": 4}, "val": {"dog": 1, "ant": 2, "cat": 1}}


def test_folder_source_reads_pixels_labels_and_sorted_classes(tmp_path):
    expected = make_tree(tmp_path / "field", COUNTS)
    # a grayscale and an RGBA image become RGB; non-images and hidden files are ignored
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    (tmp_path / "field/train/cat/gray.png").write_bytes(_png_bytes(gray, "L"))
    rgba = np.dstack([expected["train/cat/000.png"], np.full((8, 8), 7, np.uint8)])
    (tmp_path / "field/train/cat/rgba.png").write_bytes(_png_bytes(rgba, "RGBA"))
    (tmp_path / "field/train/cat/notes.txt").write_text("not an image")
    (tmp_path / "field/train/cat/.hidden.png").write_bytes(b"junk")

    ds = load_source(str(tmp_path / "field"), "train", progress=False)
    assert ds.classes == ("ant", "cat", "dog")
    assert (ds.name, ds.split) == ("field", "train")
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (11, 8, 8, 3)
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2]
    assert ds.class_counts() == [2, 6, 3]
    # sorted file order inside a class: 000..003, gray, rgba
    assert np.array_equal(ds.images[0].numpy(), expected["train/ant/000.png"])
    assert np.array_equal(ds.images[5].numpy(), expected["train/cat/003.png"])
    assert np.array_equal(ds.images[6].numpy(), np.repeat(gray[:, :, None], 3, axis=2))
    assert np.array_equal(ds.images[7].numpy(), expected["train/cat/000.png"])
    assert ds.skipped == ()

    test = load_source(tmp_path / "field", "test", progress=False)  # val/ serves as the test split
    assert test.classes == ds.classes and test.labels.tolist() == [0, 0, 1, 2]
    assert np.array_equal(test.images[3].numpy(), expected["val/dog/000.png"])

    nested = make_tree(tmp_path / "wrap" / "inner", {"train": {"x": 1}})  # the tree may sit under one folder
    assert np.array_equal(load_source(tmp_path / "wrap", progress=False).images[0].numpy(), nested["train/x/000.png"])


def test_zip_source_matches_folder_and_is_read_in_place(tmp_path):
    make_tree(tmp_path / "field", COUNTS)
    archive = zip_tree(tmp_path / "field", tmp_path / "field-data.zip", top="field/")  # one top folder is allowed
    before = sorted(p.name for p in tmp_path.iterdir())
    from_zip = load_source(str(archive), "train", progress=False, cache=False)
    from_dir = load_source(str(tmp_path / "field"), "train", progress=False, cache=False)
    assert from_zip.name == "field-data" and from_zip.classes == from_dir.classes
    assert torch.equal(from_zip.images, from_dir.images) and torch.equal(from_zip.labels, from_dir.labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing extracted
    assert len(load_source(str(archive), "test", progress=False)) == 4


def _broken_tree(root: Path) -> None:
    make_tree(root, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}})
    good = _jpeg_bytes(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (root / "train/a/truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "train/b/garbage.jpg").write_bytes(b"this is not a jpeg at all")


@pytest.mark.parametrize("as_zip", [False, True])
def test_broken_images_are_skipped_and_named(tmp_path, as_zip):
    _broken_tree(tmp_path / "tree")
    src = zip_tree(tmp_path / "tree", tmp_path / "tree.zip") if as_zip else tmp_path / "tree"
    with pytest.warns(BrokenImagesWarning, match=r"2 of 8 images .* unreadable: .*truncated\.jpg .*garbage\.jpg"):
        ds = load_source(str(src), "train", progress=False)
    assert len(ds) == 6 and ds.class_counts() == [3, 3]
    assert [Path(s).name for s in ds.skipped] == ["truncated.jpg", "garbage.jpg"]
    # the cached copy still reports them
    with pytest.warns(BrokenImagesWarning, match="2 of 8"):
        again = load_source(str(src), "train", progress=False)
    assert torch.equal(again.images, ds.images) and again.skipped == ds.skipped

    with pytest.raises(DataError, match=r"garbage\.jpg") as err:
        load_source(str(src), "train", progress=False, on_error="fail", cache=False)
    assert "on_error='skip'" in err.value.fix


def test_a_class_with_only_broken_images_is_an_error(tmp_path):
    make_tree(tmp_path / "t", {"train": {"a": 2}})
    (tmp_path / "t/train/b").mkdir()
    (tmp_path / "t/train/b/x.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="class 'b' has no readable images"):
        load_source(tmp_path / "t", progress=False)
    (tmp_path / "t/train/c").mkdir()  # an empty class folder
    with pytest.raises(DataError, match="class 'c' has no images"):
        load_source(tmp_path / "t", progress=False)


def test_packed_cache_hit_skips_decoding_and_misses_on_change(tmp_path, monkeypatch):
    make_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}})
    first = load_source(tmp_path / "t", progress=False)
    cached = list((tmp_path / "cache" / "data").glob("*.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as npz:  # weights-only safe format
        assert npz["images"].dtype == np.uint8

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache should hit")

    monkeypatch.setattr(sources_module, "pack", no_decoding)
    second = load_source(tmp_path / "t", progress=False)
    assert torch.equal(first.images, second.images) and second.classes == first.classes

    # a changed file changes the key: decoding happens again
    changed = np.zeros((8, 8, 3), np.uint8)
    (tmp_path / "t/train/b/001.png").write_bytes(_png_bytes(changed))
    with pytest.raises(AssertionError, match="decoded"):
        load_source(tmp_path / "t", progress=False)
    monkeypatch.undo()
    monkeypatch.setenv("GEAR_TRT_CACHE", str(tmp_path / "cache"))
    third = load_source(tmp_path / "t", progress=False)
    assert np.array_equal(third.images[3].numpy(), changed)

    # a damaged cache file is ignored (warned) and rewritten
    for path in (tmp_path / "cache" / "data").glob("*.npz"):
        path.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="unreadable data cache"):
        fourth = load_source(tmp_path / "t", progress=False)
    assert torch.equal(fourth.images, third.images)
    # an explicit cache_dir wins over the environment
    load_source(tmp_path / "t", progress=False, cache_dir=tmp_path / "elsewhere")
    assert len(list((tmp_path / "elsewhere" / "data").glob("*.npz"))) == 1


def test_mixed_sizes_need_image_size_and_resize_by_the_deployment_rule(tmp_path):
    expected = make_tree(tmp_path / "t", {"train": {"a": 2}}, size=(8, 8))
    big = np.random.default_rng(5).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    (tmp_path / "t/train/a/big.png").write_bytes(_png_bytes(big))
    with pytest.raises(DataError, match=r"different sizes: .*big\.png is 12x10") as err:
        load_source(tmp_path / "t", progress=False)
    assert "image size" in err.value.fix

    ds = load_source(tmp_path / "t", image_size=8, progress=False)
    assert ds.images.shape == (3, 8, 8, 3)
    assert np.array_equal(ds.images[0].numpy(), expected["train/a/000.png"])  # already 8x8: untouched
    reference = F.interpolate(torch.from_numpy(big).permute(2, 0, 1)[None].float(), size=(8, 8), mode="bilinear", align_corners=False, antialias=False)
    reference = reference.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
    assert torch.equal(ds.images[2], reference)


def test_resize_rule_is_half_pixel_bilinear():
    row = torch.tensor([0, 100], dtype=torch.uint8)
    image = row.view(1, 1, 2, 1).expand(1, 2, 2, 3).contiguous()
    out = resize_images(image, 4)
    # source x of output pixel i = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped): 0, 25, 75, 100
    assert out[0, :, :, 0].tolist() == [[0, 25, 75, 100]] * 4


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_source(str(tmp_path / "nope"))
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(DataError, match="not a zip"):
        load_source(str(tmp_path / "plain.txt"))
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no train/ or test/ folder") as err:
        load_source(str(tmp_path / "flat"))
    assert "train/<class>" in err.value.fix
    make_tree(tmp_path / "mismatch", {"train": {"a": 1, "b": 1}, "test": {"a": 1, "c": 1}})
    with pytest.raises(DataError, match=r"different classes .*\['b'\].*\['c'\]"):
        load_source(tmp_path / "mismatch", "test", progress=False)
    make_tree(tmp_path / "trainonly", {"train": {"a": 1}})
    with pytest.raises(DataError, match="no test/ folder"):
        load_source(tmp_path / "trainonly", "test")
    with pytest.raises(DataError, match="needs the dataset's root"):
        load_source("cifar10")
    with pytest.raises(ConfigError, match="unknown split"):
        load_source("builtin", "training")
    with pytest.raises(ConfigError, match="image_size"):
        load_source("builtin", image_size=0)


def _write_cifar(root: Path, variant: str, per_file: int, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A tiny CIFAR python-format folder: same keys, layout (N x 3072, R then G then B planes) and protocol."""
    rng = np.random.default_rng(seed)
    if variant == "cifar10":
        folder, files, label_key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"
        meta = ("batches.meta", {"label_names": list(CIFAR10), "num_vis": 3072})
        num_classes = 10
    else:
        folder, files, label_key = root / "cifar-100-python", ["train", "test"], "fine_labels"
        meta = ("meta", {"fine_label_names": [f"c{k:02d}" for k in range(100)], "coarse_label_names": ["x"] * 20})
        num_classes = 100
    folder.mkdir(parents=True)
    written = {}
    for name in files:
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, num_classes, per_file).tolist()
        (folder / name).write_bytes(pickle.dumps({"batch_label": "b", label_key: labels, "data": data, "filenames": ["f"] * per_file}, protocol=2))
        written[name] = (data, labels)
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    return written


def test_cifar10_torchvision_format(tmp_path):
    written = _write_cifar(tmp_path, "cifar10", per_file=4)
    train = load_source(f"cifar10:{tmp_path}")
    assert (len(train), train.name, train.classes) == (20, "cifar10", CIFAR10)
    data, labels = written["data_batch_2"]
    image = train.images[4 + 1].numpy()  # second image of the second batch
    assert image[3, 5].tolist() == [data[1, 3 * 32 + 5], data[1, 1024 + 3 * 32 + 5], data[1, 2048 + 3 * 32 + 5]]
    assert train.labels[4:8].tolist() == labels
    test = load_source(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", "test")  # the batches folder itself works too
    assert len(test) == 4 and test.labels.tolist() == written["test_batch"][1]
    resized = load_source(f"cifar10:{tmp_path}", "test", image_size=16)
    assert resized.images.shape == (4, 16, 16, 3)


def test_cifar100_torchvision_format(tmp_path):
    written = _write_cifar(tmp_path, "cifar100", per_file=6)
    test = load_source(f"cifar100:{tmp_path}", "test")
    assert len(test.classes) == 100 and test.classes[7] == "c07"
    assert test.labels.tolist() == written["test"][1]
    assert torch.equal(test.images[2].permute(2, 0, 1).reshape(-1), torch.from_numpy(written["test"][0][2]))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_cifar_batches_cannot_run_code(tmp_path):
    _write_cifar(tmp_path, "cifar10", per_file=2)
    marker = tmp_path / "pwned"
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({"data": _Exploit(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR batch file .*refusing to load global \w+\.open"):
        load_source(f"cifar10:{tmp_path}")
    assert not marker.exists()
    with pytest.raises(DataError, match="no CIFAR100 python batches"):
        load_source(f"cifar100:{tmp_path}")


def test_builtin_subset_is_balanced_cifar10():
    train = load_source("builtin", progress=False)
    test = load_source("builtin", "test", progress=False)
    assert train.classes == CIFAR10 and test.classes == CIFAR10
    assert train.class_counts() == [500] * 10 and test.class_counts() == [100] * 10
    assert train.images.shape[1:] == (32, 32, 3)
    with zipfile.ZipFile(sources_module.BUILTIN_ZIP) as zf:
        first = sorted(n for n in zf.namelist() if n.startswith("train/airplane/"))[0]
        pixels = np.asarray(Image.open(io.BytesIO(zf.read(first))).convert("RGB"))
    assert np.array_equal(train.images[0].numpy(), pixels)
    # the builtin files are byte-for-byte files of the shared set (when it is present)
    if SHARED_ZIP.is_file():
        with zipfile.ZipFile(SHARED_ZIP) as shared, zipfile.ZipFile(sources_module.BUILTIN_ZIP) as builtin:
            for name in builtin.namelist()[::600]:
                assert builtin.getinfo(name).CRC == shared.getinfo(name).CRC


@pytest.mark.skipif(not SHARED_ZIP.is_file(), reason="../shared/data/cifar10-jpeg.zip is absent")
def test_shared_cifar10_jpeg_zip():
    ds = load_source(str(SHARED_ZIP), "test", max_per_class=20, progress=False)
    assert len(ds) == 200 and ds.classes == CIFAR10 and ds.class_counts() == [20] * 10
    with zipfile.ZipFile(SHARED_ZIP) as zf:
        name = sorted(n for n in zf.namelist() if n.startswith("test/bird/") and n.endswith(".jpg"))[3]
        pixels = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))
    assert np.array_equal(ds.images[2 * 20 + 3].numpy(), pixels)


def _toy_set(n: int = 10, size: int = 8) -> ImageSet:
    """Image i is filled with the value 8 * i; its label is i % 3."""
    images = (torch.arange(n, dtype=torch.uint8) * 8).view(n, 1, 1, 1).expand(n, size, size, 3).contiguous()
    return ImageSet(images, torch.arange(n) % 3, ("a", "b", "c"), "toy", "train")


def test_normalize_matches_the_deployment_formula():
    images = torch.randint(0, 256, (2, 5, 4, 3), dtype=torch.uint8)
    out = normalize(images)
    ref = (images.numpy().astype(np.float64) / 255.0 - np.array(CIFAR_MEAN)) / np.array(CIFAR_STD)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 5, 4) and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), ref.transpose(0, 3, 1, 2), rtol=0, atol=1e-5)
    assert torch.allclose(normalize(images[0]), out[0])
    assert torch.allclose(normalize_float(images.permute(0, 3, 1, 2).float() / 255), out, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        normalize(images.float())


def test_subset_and_per_class():
    ds = _toy_set(12)
    sub = ds.subset([5, 0, 7])
    assert sub.labels.tolist() == [2, 0, 1] and sub.images[:, 0, 0, 0].tolist() == [40, 0, 56]
    assert len(ds.subset(ds.labels == 1)) == 4
    balanced = ds.per_class(2, seed=3)
    assert balanced.class_counts() == [2, 2, 2]
    assert torch.equal(balanced.images, ds.per_class(2, seed=3).images)


def test_random_crop_flip_matches_a_per_image_reference():
    images = torch.randint(0, 256, (16, 6, 7, 3), dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(9), padding=2)
    g = torch.Generator().manual_seed(9)  # the same draws, in the documented order
    offsets = torch.randint(0, 5, (2, 16), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(16):
        dy, dx = offsets[:, i].tolist()
        expected = padded[i, dy:dy + 6, dx:dx + 7]
        if flips[i]:
            expected = expected[:, ::-1]
        assert np.array_equal(out[i].numpy(), expected), i
    assert 0 < int(flips.sum()) < 16 and len(set(offsets[0].tolist())) > 1


def _stack(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_test_loader_is_ordered_and_plain():
    ds = _toy_set(10)
    loader = BatchLoader(ds, 4, train=False)
    assert len(loader) == 3
    x, y = _stack(loader)
    assert torch.equal(y, ds.labels) and torch.allclose(x, normalize(ds.images))
    with pytest.raises(ConfigError, match="augment"):
        BatchLoader(ds, 4, train=False, augment=lambda x, g: x)


def test_train_loader_is_a_pure_function_of_seed_and_epoch():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 8, 8, 3), dtype=torch.uint8, generator=gen)
    ds = ImageSet(images, torch.randint(0, 10, (200,), generator=gen), tuple("abcdefghij"), "random", "train")
    a = BatchLoader(ds, 32, train=True, seed=1)
    assert len(a) == 200 // 32  # drop_last by default
    a.set_epoch(3)
    x3, y3 = _stack(a)
    b = BatchLoader(ds, 32, train=True, seed=1)
    b.set_epoch(3)
    xb, yb = _stack(b)
    assert torch.equal(x3, xb) and torch.equal(y3, yb)
    b.set_epoch(4)
    x4, y4 = _stack(b)
    assert not torch.equal(y3, y4) and x3.shape == x4.shape
    c = BatchLoader(ds, 32, train=True, seed=2)
    c.set_epoch(3)
    assert not torch.equal(_stack(c)[1], y3)
    full = BatchLoader(ds, 32, train=True, seed=1, drop_last=False)
    assert len(full) == 7 and sorted(_stack(full)[1].tolist()) == sorted(ds.labels.tolist())


def test_train_loader_keeps_labels_with_their_images():
    ds = _toy_set(30)
    loader = BatchLoader(ds, 8, train=True, crop_padding=0, flip=False, drop_last=False)
    seen = []
    for x, y in loader:
        pixel = x * torch.tensor(CIFAR_STD).view(1, 3, 1, 1) + torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        values = (pixel[:, 0, 3, 3] * 255).round().long()
        assert torch.equal(values // 8 % 3, y)  # image i has value 8 i and label i % 3
        seen += (values // 8).tolist()
    assert sorted(seen) == list(range(30))


def test_augment_hook_gets_float_batches_and_may_return_views():
    ds = _toy_set(12)
    calls = []

    def jsd_views(x, generator):
        calls.append((x.dtype, x.shape, float(x.min()), float(x.max())))
        noise = torch.rand(x.shape[0], generator=generator).view(-1, 1, 1, 1)
        return x, (x * noise).clamp(0, 1)

    loader = BatchLoader(ds, 6, train=True, augment=jsd_views, seed=5)
    (clean, mixed), y = next(iter(loader))
    assert calls[0][0] == torch.float32 and calls[0][1] == (6, 3, 8, 8) and 0.0 <= calls[0][2] <= calls[0][3] <= 1.0
    assert clean.shape == mixed.shape == (6, 3, 8, 8) and y.shape == (6,)
    assert not torch.allclose(clean, mixed)
    # the hook's randomness comes from the per-batch generator: reproducible
    (clean2, mixed2), _ = next(iter(BatchLoader(ds, 6, train=True, augment=jsd_views, seed=5)))
    assert torch.equal(mixed, mixed2)


def test_loader_rejects_a_set_smaller_than_one_batch():
    with pytest.raises(DataError, match="fewer than one batch"):
        BatchLoader(_toy_set(5), 8, train=True)
    assert len(BatchLoader(_toy_set(5), 8, train=False)) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_loader_on_gpu_matches_cpu():
    ds = load_source("builtin", "test", progress=False).subset(range(256))
    cpu, gpu = BatchLoader(ds, 64, train=True, seed=0), BatchLoader(ds, 64, train=True, seed=0, device="cuda")
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(yc, yg.cpu()) and torch.allclose(xc, xg.cpu(), atol=1e-6)
