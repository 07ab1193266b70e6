"""The C++ runtime (engines/): build it with CMake, run its ctest suite, and check that it
preprocesses real CIFAR-10 images bit for bit like the Python runtime, ranks logits the same
way, and accepts and rejects the same sidecars (its ctest suite also runs every engine
compatibility case of engines/tests/compat_cases.json). Skips cleanly without cmake or a C++ compiler."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gear_trt.artifacts import DeployMeta, Preprocess, read_sidecar
from gear_trt.errors import ArtifactError
from gear_trt.runtime import preprocess, softmax, topk_indices

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "engines"
CIFAR_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
BUILTIN_ZIP = ROOT / "gear_trt" / "data" / "builtin" / "cifar10-subset.zip"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or _compiler() is None, reason="needs cmake and a C++ compiler")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """engines/ configured and built (warnings as errors) in a temporary build directory."""
    build_dir = tmp_path_factory.mktemp("engines-build")
    configure = ["cmake", "-S", str(ENGINES), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", "-DGEAR_TRT_WERROR=ON"]
    for cmd in (configure, ["cmake", "--build", str(build_dir), "-j", "2"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return build_dir


def dump(build: Path, *args: str) -> subprocess.CompletedProcess:
    tool = build / "gear_trt_dump"
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=120)


def cifar_images(count: int) -> list[np.ndarray]:
    """`count` real CIFAR-10 test JPEGs decoded with PIL (uint8 RGB HWC), classes interleaved."""
    source = CIFAR_ZIP if CIFAR_ZIP.is_file() else BUILTIN_ZIP
    if not source.is_file():
        pytest.skip(f"no CIFAR-10 JPEGs at {CIFAR_ZIP} or {BUILTIN_ZIP}")
    from PIL import Image

    with zipfile.ZipFile(source) as z:
        names = [n for n in z.namelist() if n.startswith("test/") and n.endswith(".jpg")]
        by_class = {c: sorted(n for n in names if n.startswith(f"test/{c}/")) for c in CLASSES}
        picked = [by_class[c][i] for i in range(count) for c in CLASSES][:count]
        return [np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB"), dtype=np.uint8) for n in picked]


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A real image at another size (PIL resamples; the runtimes then apply the rule)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC), dtype=np.uint8)


def write_meta(path: Path, meta: DeployMeta) -> Path:
    path.write_text(meta.to_json())
    return path


def cpp_preprocess(build: Path, tmp: Path, meta_path: Path, images: list[np.ndarray], *, bgr: bool = False) -> np.ndarray:
    args = []
    for i, img in enumerate(images):
        raw = tmp / f"img{i}.rgb"
        raw.write_bytes(np.ascontiguousarray(img).tobytes())
        args.append(f"{img.shape[0]}x{img.shape[1]}:{raw}")
    out = tmp / "out.f32"
    res = dump(build, "preprocess", str(meta_path), str(out), *(["--bgr"] if bgr else []), *args)
    assert res.returncode == 0, res.stderr
    return np.fromfile(out, dtype=np.float32)


def assert_bit_identical(cpp: np.ndarray, py: np.ndarray) -> None:
    assert cpp.size == py.size, (cpp.size, py.size)
    c, p = cpp.view(np.int32), np.ascontiguousarray(py).reshape(-1).view(np.int32)
    bad = np.flatnonzero(c != p)
    assert bad.size == 0, f"{bad.size} of {c.size} floats differ, first at {bad[0]}: C++ {cpp[bad[0]]!r} vs Python {py.reshape(-1)[bad[0]]!r}"


def test_ctest_suite_passes(build: Path) -> None:
    out = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "100% tests passed" in out.stdout


@pytest.mark.parametrize(
    "meta",
    [
        DeployMeta(Preprocess(input_size=32), CLASSES),  # CIFAR statistics
        DeployMeta(Preprocess(input_size=24, mean=(0.5, 0.25, 0.125), std=(0.229, 0.224, 0.225), scale=1 / 127.5), CLASSES),
        DeployMeta(Preprocess(input_size=40, color="BGR"), CLASSES),
    ],
    ids=["cifar32", "custom24", "bgr40"],
)
def test_preprocessing_is_bit_identical_to_python(build: Path, tmp_path: Path, meta: DeployMeta) -> None:
    base = cifar_images(20)
    # Real images at their own 32x32 and resized to other shapes: up- and down-sampling, non-square,
    # extreme aspect ratios, a single pixel. The 24 and 40 targets have inexact scale ratios, where
    # any difference in rounding (a fused multiply-add) would show.
    images = base[:12] + [resized(base[12], 40, 40), resized(base[13], 24, 24), resized(base[14], 48, 36), resized(base[15], 100, 7)]
    images += [resized(base[16], 1, 1), resized(base[17], 33, 31)]
    meta_path = write_meta(tmp_path / "meta.json", meta)
    py = preprocess(images, meta.preprocess)
    assert py.shape == (len(images), 3, meta.preprocess.input_size, meta.preprocess.input_size)
    assert_bit_identical(cpp_preprocess(build, tmp_path, meta_path, images), py)
    # Frames in BGR order (OpenCV) give the same model input on both sides.
    bgr = [img[..., ::-1] for img in images[:6]]
    assert_bit_identical(cpp_preprocess(build, tmp_path, meta_path, bgr, bgr=True), preprocess(bgr, meta.preprocess, color="BGR"))


def test_topk_and_softmax_agree(build: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(300, 10)).astype(np.float32)
    logits[::7, 3] = logits[::7, 8]  # ties: the lower index must come first on both sides
    logits[::11] = np.round(logits[::11])  # more ties
    logits[5] = 0.0
    logits[6, :] = [80, -80, 80, 0, 1e-8, -1e-8, 5, 5, 5, 5]
    logits[7, 2] = np.nan  # NaN ranks last
    logits[8, 4] = -np.inf
    path = tmp_path / "logits.f32"
    logits.tofile(path)
    out = tmp_path / "topk.txt"
    res = dump(build, "topk", "4", "10", str(path), str(out))
    assert res.returncode == 0, res.stderr
    rows = [line.split("|") for line in out.read_text().splitlines()]
    cpp_idx = np.array([[int(v) for v in r[0].split()] for r in rows])
    cpp_p = np.array([[float(v) for v in r[1].split()] for r in rows], dtype=np.float32)
    py_idx = topk_indices(logits, 4)
    np.testing.assert_array_equal(cpp_idx, py_idx)
    finite = np.isfinite(logits).all(axis=1) | np.isneginf(logits).any(axis=1)
    py_p = np.take_along_axis(softmax(logits), py_idx, axis=1)
    np.testing.assert_allclose(cpp_p[finite], py_p[finite], rtol=2e-6, atol=1e-7)


VALID = DeployMeta(Preprocess(input_size=32), CLASSES, spec_hash="h", checkpoint="c.pt").to_dict()


def _edit(path: str, value: object) -> dict:
    d = json.loads(json.dumps(VALID))
    keys = path.split(".")
    target = d
    for k in keys[:-1]:
        target = target[k]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return d


_DELETE = object()

SIDECARS = {
    "valid": json.dumps(VALID),
    "with_tensorrt": json.dumps({**VALID, "tensorrt": {"version": "8.5.2.2", "gpu_name": "Orin", "compute_capability": [8, 7]}}),
    "defaults": json.dumps({"format": "gear-trt/1", "classes": ["a", "b"], "preprocess": {"input_size": 8, "mean": [0, 0, 0], "std": [1, 1, 1]}}),
    "malformed_json": json.dumps(VALID)[:-5],
    "not_an_object": "[1, 2]",
    "wrong_format": json.dumps(_edit("format", "gear-trt/2")),
    "no_preprocess": json.dumps(_edit("preprocess", _DELETE)),
    "no_classes": json.dumps(_edit("classes", _DELETE)),
    "empty_classes": json.dumps(_edit("classes", [])),
    "class_not_string": json.dumps(_edit("classes", ["a", 1])),
    "no_input_size": json.dumps(_edit("preprocess.input_size", _DELETE)),
    "float_input_size": json.dumps(_edit("preprocess.input_size", 32.0)),
    "string_input_size": json.dumps(_edit("preprocess.input_size", "32")),
    "no_mean": json.dumps(_edit("preprocess.mean", _DELETE)),
    "short_mean": json.dumps(_edit("preprocess.mean", [0.5, 0.5])),
    "string_in_std": json.dumps(_edit("preprocess.std", [0.5, "0.5", 0.5])),
    "zero_std": json.dumps(_edit("preprocess.std", [0.5, 0.0, 0.5])),
    "string_scale": json.dumps(_edit("preprocess.scale", "0.0039")),
    "unknown_preprocess_field": json.dumps(_edit("preprocess.gamma", 2.2)),
    "bad_color": json.dumps(_edit("preprocess.color", "HSV")),
    "bad_layout": json.dumps(_edit("preprocess.layout", "NHWC")),
    "bad_resize": json.dumps(_edit("preprocess.resize", "bicubic")),
    "fp16_input": json.dumps(_edit("input_dtype", "float16")),
    "empty_input_name": json.dumps(_edit("input_name", "")),
    "tensorrt_not_object": json.dumps({**VALID, "tensorrt": "10.3"}),
}


@pytest.mark.parametrize("case", sorted(SIDECARS))
def test_both_runtimes_accept_and_reject_the_same_sidecars(build: Path, tmp_path: Path, case: str) -> None:
    path = tmp_path / "model.engine.json"
    path.write_text(SIDECARS[case])
    res = dump(build, "meta", str(path))
    try:
        meta = DeployMeta.from_json(SIDECARS[case], str(path))
    except ArtifactError as exc:
        assert res.returncode == 2, f"Python rejects ({exc}) but C++ accepts:\n{res.stdout}"
        assert res.stderr.startswith("error: ") and str(path) in res.stderr and res.stderr.count("\n") == 1
        return
    assert res.returncode == 0, f"Python accepts but C++ rejects: {res.stderr}"
    fields = dict(line.split("=", 1) for line in res.stdout.splitlines())
    pre = meta.preprocess
    assert int(fields["input_size"]) == pre.input_size
    assert fields["classes"].split(",") == list(meta.classes)
    assert [np.float32(v) for v in fields["mean"].split(",")] == [np.float32(v) for v in pre.mean]
    assert [np.float32(v) for v in fields["std"].split(",")] == [np.float32(v) for v in pre.std]
    assert np.float32(fields["scale"]) == np.float32(pre.scale)
    assert fields["color"] == pre.color and fields["input_name"] == meta.input_name and fields["precision"] == meta.precision
    if case == "with_tensorrt":
        assert fields["tensorrt.compute_capability"] == "8.7" and fields["tensorrt.version"] == "8.5.2.2"


def test_engine_hash_check_agrees(build: Path, tmp_path: Path) -> None:
    """Both runtimes refuse a sidecar whose engine_sha256 is not the engine's (a swapped file)."""
    import hashlib

    engine = tmp_path / "model.engine"
    engine.write_bytes(np.random.default_rng(1).bytes(300_000))  # several SHA-256 blocks and read chunks
    digest = hashlib.sha256(engine.read_bytes()).hexdigest()
    sidecar = tmp_path / "model.engine.json"
    sidecar.write_text(json.dumps({**VALID, "backend": "tensorrt", "engine_sha256": digest}))
    res = dump(build, "check", str(engine))
    assert res.returncode == 0 and f"sha256={digest}" in res.stdout, res.stderr
    read_sidecar(engine)
    engine.write_bytes(engine.read_bytes()[:-1] + b"!")
    res = dump(build, "check", str(engine))
    assert res.returncode == 2 and "is not the file its sidecar describes" in res.stderr
    with pytest.raises(ArtifactError, match="is not the file its sidecar describes"):
        read_sidecar(engine)
    sidecar.unlink()
    res = dump(build, "check", str(engine))
    assert res.returncode == 2 and "no metadata sidecar" in res.stderr


def test_bad_images_are_clear_errors(build: Path, tmp_path: Path) -> None:
    meta_path = write_meta(tmp_path / "meta.json", DeployMeta(Preprocess(input_size=32), CLASSES))
    raw = tmp_path / "img.rgb"
    raw.write_bytes(bytes(32 * 32 * 4))  # RGBA bytes declared as 32x32 RGB
    res = dump(build, "preprocess", str(meta_path), str(tmp_path / "o.f32"), f"32x32:{raw}")
    assert res.returncode == 2 and "4096 bytes, a 32x32x3 image needs 3072" in res.stderr
    res = dump(build, "preprocess", str(meta_path), str(tmp_path / "o.f32"), f"0x32:{raw}")
    assert res.returncode == 2 and "must be positive" in res.stderr
    res = dump(build, "preprocess", str(tmp_path / "missing.json"), str(tmp_path / "o.f32"), f"32x32:{raw}")
    assert res.returncode == 2 and "cannot open" in res.stderr
