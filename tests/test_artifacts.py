"""gear_trt.artifacts: the engine compatibility rule (one table of cases, shared with the C++
runtime's tests), ONNX metadata read without onnx, sidecars, and the promise of no torch at import."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gear_trt.artifacts import (
    DeployMeta,
    Preprocess,
    check_tensorrt_compat,
    make_sidecar,
    normalize_compute_capability,
    preprocess,
    preprocess_images,
    read_meta,
    read_sidecar,
    set_meta,
    write_meta,
    write_sidecar,
)
from gear_trt.artifacts.onnx_meta import read_metadata_props
from gear_trt.errors import ArtifactError

ROOT = Path(__file__).resolve().parents[1]
CASES = json.loads((ROOT / "engines" / "tests" / "compat_cases.json").read_text())["cases"]
META = DeployMeta(Preprocess(input_size=32), tuple("abcdefghij"), spec_hash="h", checkpoint="c.pt")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_compatibility_rule(case: dict) -> None:
    """engines/src/compat.cpp runs the same table in its ctest suite (tests/test_cpp_runtime.py)."""
    rt = case["runtime"]
    call = lambda: check_tensorrt_compat(case["engine"], runtime_version=rt["version"], gpu_name=rt["gpu_name"],  # noqa: E731
                                         compute_capability=rt["compute_capability"], require_same_gpu=case.get("require_same_gpu", True))
    if case["error"] is None:
        call()
        return
    with pytest.raises(ArtifactError) as err:
        call()
    assert case["error"] in err.value.message
    assert "gear-trt build-engine" in err.value.fix or "require_same_gpu" in err.value.fix


def test_rebuild_hint_names_the_precision() -> None:
    with pytest.raises(ArtifactError) as err:
        check_tensorrt_compat({"version": "10.3.0.30", "compute_capability": "8.7", "gpu_name": "Orin", "precision": "int8"},
                              runtime_version="8.5.2", gpu_name="Orin", compute_capability="8.7", where="m.int8.engine")
    assert err.value.message.startswith("m.int8.engine: ") and "--precision int8" in err.value.fix


def test_compute_capability_spellings() -> None:
    assert [normalize_compute_capability(v) for v in ("8.7", [8, 7], (8, 7), 8.7, "sm_87", "87", 87, "12.0", None, "x", True)] == \
        ["8.7", "8.7", "8.7", "8.7", "8.7", "8.7", "8.7", "12.0", None, None, None]


def _onnx_model(props: dict[str, str]) -> bytes:
    """A small real ONNX model (Conv + Gemm weights) with the given metadata_props."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fc")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=[w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_onnx_metadata_is_read_without_onnx(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "m.onnx"
    path.write_bytes(_onnx_model({"author": "someone", "gear_trt": META.to_json(), "ünïcode": "välue"}))
    assert read_meta(path) == META
    assert read_metadata_props(path) == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    # write_meta replaces the entry in place and keeps the others; the weights are untouched.
    changed = DeployMeta(Preprocess(input_size=32, color="BGR"), META.classes, precision="fp16")
    write_meta(path, changed)
    model = onnx.load(str(path))
    assert read_meta(path) == changed and read_metadata_props(path)["author"] == "someone"
    assert [p.key for p in model.metadata_props].count("gear_trt") == 1
    # The reader never imports onnx (the deployment runtime does not need it).
    code = f"import sys; from gear_trt.artifacts import read_meta; m = read_meta({str(path)!r}); print(m.precision, 'onnx' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["fp16", "False", "False"], out.stderr


def test_onnx_metadata_errors(tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(_onnx_model({}))
    with pytest.raises(ArtifactError, match="carries no gear-trt metadata"):
        read_meta(bare)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_onnx_model({"gear_trt": json.dumps({**META.to_dict(), "classes": []})}))
    with pytest.raises(ArtifactError, match="bad.onnx: metadata 'classes' must be a non-empty list"):
        read_meta(bad)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ArtifactError, match="is not a readable ONNX file"):
        read_meta(garbage)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(_onnx_model({"gear_trt": META.to_json()})[:-40])  # truncated inside a field
    with pytest.raises(ArtifactError, match="is not a readable ONNX file"):
        read_meta(cut)
    with pytest.raises(ArtifactError, match="does not exist"):
        read_meta(tmp_path / "missing.onnx")


def test_set_meta_replaces_the_entry() -> None:
    import onnx

    model = onnx.load_from_string(_onnx_model({"gear_trt": "{}"}))
    set_meta(model, META)
    assert [(p.key, p.value) for p in model.metadata_props] == [("gear_trt", META.to_json())]


def test_sidecar_read_once_checks_metadata_and_hash(tmp_path: Path) -> None:
    engine = tmp_path / "m.int8.engine"
    engine.write_bytes(b"a serialized plan")
    side = write_sidecar(engine, make_sidecar(META, "tensorrt", engine, {"version": "10.3.0.30"}))
    assert side.name == "m.int8.engine.json"
    sc = read_sidecar(engine)
    assert sc.meta == META and sc.backend == "tensorrt" and sc.section("tensorrt") == {"version": "10.3.0.30"}
    assert sc.raw["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    with pytest.raises(ArtifactError, match="no 'onnxruntime' section"):
        sc.section("onnxruntime")
    engine.write_bytes(b"another plan")
    with pytest.raises(ArtifactError, match="is not the file its sidecar describes"):
        read_sidecar(engine)
    # Metadata nested under "gear_trt" (as in ONNX), and a sidecar named after the stem, are read too.
    other = tmp_path / "x.plan"
    other.write_bytes(b"plan")
    (tmp_path / "x.json").write_text(json.dumps({"gear_trt": META.to_dict(), "tensorrt": {"version": "10.3.0"}}))
    sc = read_sidecar(other)
    assert sc.meta == META and sc.backend == "tensorrt" and sc.path.name == "x.json"
    (tmp_path / "x.json").write_text(json.dumps({**META.to_dict(), "backend": "openvino"}))
    with pytest.raises(ArtifactError, match="unknown backend 'openvino'"):
        read_sidecar(other)
    (tmp_path / "x.json").write_text(json.dumps({**META.to_dict(), "preprocess": {"input_size": "32"}}))
    with pytest.raises(ArtifactError, match="x.json: preprocess.input_size must be a positive integer"):
        read_sidecar(other)
    with pytest.raises(ArtifactError, match="no metadata sidecar for .*nothing.engine"):
        read_sidecar(tmp_path / "nothing.engine")


def test_numpy_and_torch_preprocessing_agree() -> None:
    """The runtime's numpy rule and the evaluation's torch rule, on the same images (exact at 32 -> 32 and 64 -> 32)."""
    import torch

    rng = np.random.default_rng(0)
    for size in (32, 64):
        images = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        for pre in (Preprocess(input_size=32), Preprocess(input_size=32, color="BGR")):
            ours = preprocess(images, pre)
            ref = preprocess_images(torch.from_numpy(images), pre).numpy()
            np.testing.assert_array_equal(ours.view(np.int32), ref.view(np.int32))


def test_no_torch_at_import() -> None:
    code = "import sys, gear_trt.artifacts; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
