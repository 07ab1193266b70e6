"""gear_trt.runtime on onnxruntime with real CIFAR-10 JPEGs: preprocessing, parity, bad input."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import warnings
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gear_trt.artifacts.meta import CIFAR_MEAN, CIFAR_STD, METADATA_KEY, DeployMeta, Preprocess
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError, DataError
from gear_trt.runtime import load, preprocess, softmax, topk_indices

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
BUILTIN_ZIP = ROOT / "gear_trt" / "data" / "builtin" / "cifar10-subset.zip"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@functools.lru_cache(maxsize=None)
def _cifar_jpegs(count: int, split: str) -> tuple[tuple[str, bytes], ...]:
    source = CIFAR_ZIP if CIFAR_ZIP.is_file() else BUILTIN_ZIP
    with zipfile.ZipFile(source) as z:
        names = [n for n in z.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg")]
        by_class = {c: sorted(n for n in names if n.startswith(f"{split}/{c}/")) for c in CLASSES}
        picked = [(c, by_class[c][i]) for i in range(count) for c in CLASSES][:count]
        return tuple((c, z.read(name)) for c, name in picked)


def real_jpegs(count: int, split: str = "test") -> list[tuple[str, bytes]]:
    """(class name, JPEG bytes) of `count` real CIFAR-10 images, classes interleaved."""
    if not CIFAR_ZIP.is_file() and not BUILTIN_ZIP.is_file():
        pytest.skip(f"no CIFAR-10 JPEGs at {CIFAR_ZIP} or {BUILTIN_ZIP}")
    return list(_cifar_jpegs(count, split))


def decode(jpeg: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    from PIL import Image

    im = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if size is not None:  # a real image at another size (PIL's resize; the runtime then resizes back)
        im = im.resize(size, Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def torch_reference(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """The deployment rule written with torch ops: interpolate, then (x * scale - mean) / std."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if x.shape[2:] != (pre.input_size, pre.input_size):
        x = F.interpolate(x, size=(pre.input_size, pre.input_size), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x * pre.scale - mean) / std).numpy()


def _set_metadata(path: Path, meta: DeployMeta | None) -> None:
    """Replace (or with None, remove) the "gear_trt" entry of an ONNX file's metadata_props."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in kept + ([(METADATA_KEY, meta.to_json())] if meta is not None else []):
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def export_model(path: Path, *, meta: DeployMeta | None, seed: int = 0, batch: int | None = None) -> "object":
    """A small real CNN (the vgg19 backbone) exported to ONNX (opset 17) with `meta` in metadata_props.

    Uses the toolkit's exporter (gear_trt.export.onnx.export_onnx) for the usual dynamic-batch
    file; a fixed-batch file, or a missing exporter, goes through torch.onnx.export directly.
    """
    import torch

    from gear_trt.models import backbone_spec, build_model

    torch.manual_seed(seed)
    spec = backbone_spec("vgg19")
    model = build_model(spec).eval()
    try:
        from gear_trt.export.onnx import export_onnx
    except ImportError:
        export_onnx = None
    if export_onnx is not None and batch is None:
        export_onnx(model, spec, make_meta(), path, opset=17, parity=False)
    else:
        x = torch.zeros(batch or 2, 3, spec.input_size, spec.input_size)
        dynamic = None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
        with warnings.catch_warnings():  # the legacy exporter's deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"], dynamic_axes=dynamic)
    _set_metadata(path, meta)  # the metadata under test, possibly wrong on purpose
    return model


def tensorrt_available() -> bool:
    """True for the real library (tensorrt-stubs leaves an empty namespace package that imports)."""
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Runtime")


def make_meta(**overrides: object) -> DeployMeta:
    fields: dict = dict(preprocess=Preprocess(input_size=32), classes=CLASSES, spec_hash="test", checkpoint="test.pt")
    fields.update(overrides)
    return DeployMeta(**fields)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("runtime") / "backbone.onnx"
    model = export_model(path, meta=make_meta())
    return path, model


@pytest.fixture(scope="module")
def cifar() -> tuple[np.ndarray, list[str]]:
    items = real_jpegs(40)
    return np.stack([decode(j) for _, j in items]), [c for c, _ in items]


# ---- preprocessing -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, (40, 40), (24, 24), (48, 36), (7, 100)])
def test_preprocess_is_bit_identical_to_torch(size: tuple[int, int] | None) -> None:
    """Resizing to 32x32 is exact float32 arithmetic, so torch and the runtime agree in every bit."""
    images = np.stack([decode(j, size) for _, j in real_jpegs(12)])
    pre = Preprocess(input_size=32)
    ours = preprocess(images, pre)
    ref = torch_reference(images, pre)
    assert ours.dtype == np.float32 and ours.shape == (12, 3, 32, 32)
    assert ours.flags.c_contiguous
    np.testing.assert_array_equal(ours.view(np.int32), ref.view(np.int32))


@pytest.mark.parametrize("input_size", [24, 40])
def test_preprocess_close_to_torch_for_inexact_scales(input_size: int) -> None:
    """Scale ratios like 32 -> 24 round; torch may fuse multiply-adds there, so allow float noise."""
    images = np.stack([decode(j) for _, j in real_jpegs(12)])
    pre = Preprocess(input_size=input_size)
    np.testing.assert_allclose(preprocess(images, pre), torch_reference(images, pre), rtol=0, atol=1e-5)


def test_preprocess_matches_training_normalize(cifar: tuple[np.ndarray, list[str]]) -> None:
    """Same numbers as the training pipeline's normalize (which divides by 255: within 1 ulp)."""
    data = pytest.importorskip("gear_trt.data")
    if not hasattr(data, "normalize"):
        pytest.skip("gear_trt.data.normalize is not there yet")
    import torch

    images, _ = cifar
    train_side = data.normalize(torch.from_numpy(images)).numpy()
    ours = preprocess(images, Preprocess(input_size=32, mean=CIFAR_MEAN, std=CIFAR_STD))
    np.testing.assert_allclose(ours, train_side, rtol=0, atol=1e-6)


def test_preprocess_input_forms(cifar: tuple[np.ndarray, list[str]]) -> None:
    images, _ = cifar
    pre = Preprocess(input_size=32)
    batch = preprocess(images[:4], pre)
    np.testing.assert_array_equal(preprocess(images[0], pre), batch[:1])  # one HWC image -> N=1
    np.testing.assert_array_equal(preprocess(list(images[:4]), pre), batch)
    np.testing.assert_array_equal(preprocess(images[:4, ..., ::-1], pre, color="BGR"), batch)  # OpenCV order
    bgr_model = Preprocess(input_size=32, color="BGR")
    as_bgr = preprocess(images[:4, ..., ::-1], pre)  # a BGR model sees B first, normalised with its own mean/std
    np.testing.assert_array_equal(preprocess(images[:4], bgr_model), as_bgr)
    np.testing.assert_array_equal(preprocess(images[:4, ..., ::-1], bgr_model, color="BGR"), as_bgr)
    # A list of mixed sizes keeps its order; each image is resized by the rule.
    big = decode(real_jpegs(1)[0][1], (40, 40))
    mixed = preprocess([images[0], big, images[1]], pre)
    np.testing.assert_array_equal(mixed[1], preprocess(big, pre)[0])
    np.testing.assert_array_equal(mixed[[0, 2]], batch[:2])


def test_topk_and_softmax() -> None:
    logits = np.array([[1.0, 3.0, 3.0, -2.0], [0.0, 0.0, 0.0, 0.0], [np.nan, 1.0, -np.inf, 1.0]], dtype=np.float32)
    idx = topk_indices(logits, 3)
    assert idx.tolist() == [[1, 2, 0], [0, 1, 2], [1, 3, 2]]  # ties by lower index, NaN last
    p = softmax(logits[:2])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0], np.exp(logits[0] - 3) / np.exp(logits[0] - 3).sum(), rtol=1e-6)
    with pytest.raises(ConfigError, match="top-k"):
        topk_indices(logits, 5)


# ---- inference on onnxruntime --------------------------------------------------------------


def test_predict_matches_torch_model(onnx_model: tuple[Path, object], cifar: tuple[np.ndarray, list[str]]) -> None:
    import torch

    path, model = onnx_model
    images, _ = cifar
    clf = load(path, num_threads=1)
    assert clf.backend_name == "onnxruntime" and clf.classes == CLASSES and clf.input_size == 32
    pred = clf.predict(images, k=3, batch_size=16)
    with torch.no_grad():
        ref = model(torch.from_numpy(torch_reference(images, clf.meta.preprocess))).numpy()
    assert len(pred) == len(images) and pred.indices.shape == (len(images), 3)
    np.testing.assert_allclose(pred.logits, ref, rtol=1e-4, atol=1e-4)
    assert pred.indices[:, 0].tolist() == ref.argmax(axis=1).tolist()
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pred.scores, np.take_along_axis(pred.probabilities, pred.indices, axis=1))
    assert pred.labels == [CLASSES[i] for i in pred.indices[:, 0]]
    assert all(s[0] >= s[1] >= s[2] for s in pred.scores)
    # One image alone, or resized inputs, give the same answer as inside the batch.
    one = clf.predict(images[5])
    assert one.indices.tolist() == [[pred.indices[5, 0]]]
    np.testing.assert_allclose(one.logits[0], pred.logits[5], rtol=1e-5, atol=1e-5)


def test_fixed_batch_model_pads_last_chunk(tmp_path: Path, cifar: tuple[np.ndarray, list[str]], onnx_model: tuple[Path, object]) -> None:
    path = tmp_path / "fixed.onnx"
    export_model(path, meta=make_meta(), batch=8)
    images, _ = cifar
    fixed = load(path, num_threads=1).predict(images[:11])
    dynamic = load(onnx_model[0], num_threads=1).predict(images[:11])
    np.testing.assert_allclose(fixed.logits, dynamic.logits, rtol=1e-5, atol=1e-5)


def test_import_pulls_in_no_trainer_and_no_torch(onnx_model: tuple[Path, object]) -> None:
    code = (
        "import sys, numpy as np\n"
        "import gear_trt.runtime as rt\n"
        f"m = rt.load({str(onnx_model[0])!r}, num_threads=1)\n"
        "p = m.predict(np.zeros((2, 32, 32, 3), np.uint8), k=2)\n"
        "bad = sorted(k for k in sys.modules if k == 'torch' or k.startswith(('torch.', 'gear_trt.train', 'gear_trt.models', 'gear_trt.grow', 'gear_trt.data', 'PIL')))\n"
        "print('BAD', bad, p.indices.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BAD [] (2, 2)" in out.stdout


# ---- bad input -----------------------------------------------------------------------------


def test_bad_images_raise_clear_errors(onnx_model: tuple[Path, object], cifar: tuple[np.ndarray, list[str]]) -> None:
    clf = load(onnx_model[0], num_threads=1)
    img = cifar[0][0]
    with pytest.raises(DataError, match="dtype float32, expected uint8"):
        clf.predict(img.astype(np.float32) / 255)
    with pytest.raises(DataError, match="4 channels") as info:
        clf.predict(np.concatenate([img, img[..., :1]], axis=-1))
    assert "alpha" in info.value.fix
    with pytest.raises(DataError, match="1 channels"):
        clf.predict(img[..., :1])
    with pytest.raises(DataError, match="expected HxWx3"):
        clf.predict(img[..., 0])  # greyscale HxW
    with pytest.raises(DataError) as info:
        clf.predict(img.transpose(2, 0, 1).copy())  # CHW
    assert "transpose" in info.value.fix
    with pytest.raises(DataError, match="no images"):
        clf.predict([])
    with pytest.raises(DataError, match="empty"):
        clf.predict(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="image 1"):
        clf.predict([img, img.astype(np.int16)])
    with pytest.raises(ConfigError, match="colour order"):
        clf.predict(img, color="RGBA")
    with pytest.raises(ConfigError, match="top-k"):
        clf.predict(img, k=11)
    with pytest.raises(ConfigError, match="float32"):
        clf.infer(np.zeros((1, 3, 32, 32), np.float64))


def test_missing_metadata(tmp_path: Path, cifar: tuple[np.ndarray, list[str]]) -> None:
    path = tmp_path / "bare.onnx"
    export_model(path, meta=None)
    with pytest.raises(ArtifactError, match="carries no gear-trt metadata"):
        load(path)
    clf = load(path, meta=make_meta(), num_threads=1)  # metadata given by the app
    assert clf.predict(cifar[0][:3]).indices.shape == (3, 1)
    # A sidecar beside the ONNX file also serves.
    (tmp_path / "bare.onnx.json").write_text(make_meta(classes=tuple("abcdefghij")).to_json())
    assert load(path, num_threads=1).classes == tuple("abcdefghij")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(classes=("a", "b", "c")), "outputs 10 classes, the metadata lists 3"),
        (dict(input_name="image"), "names input 'image'"),
        (dict(output_name="probs"), "names output 'probs'"),
        (dict(preprocess=Preprocess(input_size=64)), "does not match the metadata"),
        (dict(preprocess=Preprocess(input_size=32, color="YUV")), "color 'YUV' is not supported"),
        (dict(preprocess=Preprocess(input_size=32, std=(0.2, 0.0, 0.2))), "std has a zero"),
        (dict(preprocess=Preprocess(input_size=32, mean=(0.5, 0.5))), "mean must be 3 finite numbers"),
        (dict(format="gear-trt/0"), "format is 'gear-trt/0'"),
    ],
)
def test_mismatched_metadata(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "m.onnx"
    export_model(path, meta=make_meta(**change))
    with pytest.raises(ArtifactError, match=message):
        load(path)


def test_malformed_metadata_json(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "m.onnx"
    export_model(path, meta=None)
    proto = onnx.load(str(path))
    proto.metadata_props.add(key=METADATA_KEY, value='{"format": "gear-trt/1", "preprocess": {')
    onnx.save(proto, str(path))
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(path)


def test_engine_sidecars(tmp_path: Path, onnx_model: tuple[Path, object], cifar: tuple[np.ndarray, list[str]]) -> None:
    engine = tmp_path / "model.engine"
    shutil.copy(onnx_model[0], engine)
    with pytest.raises(ArtifactError, match="no metadata sidecar"):
        load(engine)
    sidecar = tmp_path / "model.engine.json"
    sidecar.write_text('{"format": "gear-trt/1", ')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(engine)
    d = make_meta().to_dict()
    del d["classes"]
    sidecar.write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match="classes"):
        load(engine)
    # An onnxruntime "engine": the sidecar says which backend runs it.
    sidecar.write_text(json.dumps({**make_meta().to_dict(), "backend": "onnxruntime"}))
    clf = load(engine, num_threads=1)
    assert clf.backend_name == "onnxruntime"
    ref = load(onnx_model[0], num_threads=1).predict(cifar[0][:4]).logits
    np.testing.assert_allclose(clf.predict(cifar[0][:4]).logits, ref, rtol=1e-6, atol=1e-6)
    # A sidecar written for another file (the engine was replaced) is caught by its hash.
    sidecar.write_text(json.dumps({**make_meta().to_dict(), "backend": "onnxruntime", "engine_sha256": "0" * 64}))
    with pytest.raises(ArtifactError, match="not the file its sidecar describes"):
        load(engine)
    digest = hashlib.sha256(engine.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps({**make_meta().to_dict(), "backend": "onnxruntime", "engine_sha256": digest}))
    assert load(engine, num_threads=1).backend_name == "onnxruntime"
    # A TensorRT sidecar needs TensorRT and a GPU; without them the error says so.
    trt_info = {"version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "precision": "fp32"}
    sidecar.write_text(json.dumps({**make_meta().to_dict(), "tensorrt": trt_info}))
    if not tensorrt_available():
        with pytest.raises(BackendUnavailable, match="tensorrt"):
            load(engine)
    with pytest.raises(ConfigError, match="sidecar"):
        load(sidecar)
    with pytest.raises(ArtifactError, match="does not exist"):
        load(tmp_path / "missing.engine")


# ---- the example app -----------------------------------------------------------------------


def test_classify_folder_example(tmp_path: Path, onnx_model: tuple[Path, object]) -> None:
    folder = tmp_path / "images"
    for i, (cls, jpeg) in enumerate(real_jpegs(30)):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        (folder / cls / f"{i:03d}.jpg").write_bytes(jpeg)
    (folder / "notes.txt").write_text("not an image")
    script = ROOT / "engines" / "examples" / "classify_folder.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, str(script), str(onnx_model[0]), str(folder), "--batch-size", "8", "--top-k", "2", "--threads", "1", "--show", "3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "30 images" in out.stdout and "images/s" in out.stdout
    assert "accuracy" in out.stdout  # class folders named like the model's classes
    bad = subprocess.run([sys.executable, str(script), str(onnx_model[0]), str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no images" in bad.stderr


# ---- TensorRT (device only) ----------------------------------------------------------------


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_onnxruntime(tmp_path: Path, onnx_model: tuple[Path, object], cifar: tuple[np.ndarray, list[str]]) -> None:
    if not tensorrt_available():
        pytest.skip("TensorRT is not installed")
    import tensorrt as trt
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_model[0]))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (16, 3, 32, 32), (32, 3, 32, 32))
    config.add_optimization_profile(profile)
    engine = tmp_path / "model.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    info = {"version": trt.__version__, "gpu_name": torch.cuda.get_device_name(0), "compute_capability": "{}.{}".format(*torch.cuda.get_device_capability(0)), "precision": "fp32"}
    (tmp_path / "model.engine.json").write_text(json.dumps({**make_meta().to_dict(), "tensorrt": info}))
    clf = load(engine)
    assert clf.backend_name == "tensorrt"
    images = cifar[0]
    got = clf.predict(images, k=3)  # 40 images: two chunks through a max-32 profile
    ref = load(onnx_model[0]).predict(images, k=3)
    np.testing.assert_allclose(got.logits, ref.logits, rtol=1e-3, atol=1e-3)
    (tmp_path / "model.engine.json").write_text(json.dumps({**make_meta().to_dict(), "tensorrt": {**info, "version": "1.0.0"}}))
    with pytest.raises(ArtifactError, match="this runtime is TensorRT"):
        load(engine)
