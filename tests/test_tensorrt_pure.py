"""The TensorRT layer without TensorRT: decisions against fake 8.5 / 10.x / 11.x modules, sidecar
reading, parser-error formatting, the mypy check against tensorrt-stubs; and real builds, which
run only where TensorRT and a GPU are present."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gear_trt.backends import tensorrt as T
from gear_trt.errors import ArtifactError, ConfigError

ROOT = Path(__file__).resolve().parents[1]


def fake_trt(version: str, network: tuple[str, ...], builder: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=SimpleNamespace(**{n: i for i, n in enumerate(network)}),
                           BuilderFlag=SimpleNamespace(**{n: i for i, n in enumerate(builder)}))


# Attribute sets as the 8.5.2 (JetPack 5), 10.3 (JetPack 6) and 11.4 bindings have them (TENSORRT.md section 1.7).
TRT85 = fake_trt("8.5.2.2", ("EXPLICIT_BATCH",), ("FP16", "INT8", "TF32", "STRICT_TYPES", "OBEY_PRECISION_CONSTRAINTS"))
TRT10 = fake_trt("10.3.0.30", ("EXPLICIT_BATCH", "STRONGLY_TYPED"), ("FP16", "BF16", "INT8", "TF32", "OBEY_PRECISION_CONSTRAINTS"))
TRT11 = fake_trt("11.4.0.106", ("STRONGLY_TYPED",), ("TF32", "DEBUG", "REFIT", "STRIP_PLAN"))


@pytest.mark.parametrize("api, precision, onnx, network, flags, cleared", [
    (TRT85, "fp32", "fp32", ("EXPLICIT_BATCH",), (), ("TF32",)),
    (TRT85, "fp16", "fp32", ("EXPLICIT_BATCH",), ("FP16",), ()),
    (TRT85, "int8", "int8", ("EXPLICIT_BATCH",), ("INT8",), ()),
    (TRT10, "fp32", "fp32", (), (), ("TF32",)),
    (TRT10, "fp16", "fp32", (), ("FP16",), ()),
    (TRT10, "int8", "int8", (), ("INT8",), ()),
    (TRT11, "fp32", "fp32", ("STRONGLY_TYPED",), (), ("TF32",)),
    (TRT11, "fp16", "fp16", ("STRONGLY_TYPED",), (), ()),
    (TRT11, "int8", "int8", ("STRONGLY_TYPED",), (), ()),
], ids=lambda v: getattr(v, "__version__", str(v)))
def test_default_plan_by_feature_set(api, precision, onnx, network, flags, cleared):
    plan = T.plan_build(T.detect_features(api), precision)
    assert (plan.onnx_precision, plan.network_flags, plan.builder_flags, plan.cleared_flags) == (onnx, network, flags, cleared)
    assert plan.strongly_typed == (api is TRT11)


def test_strongly_typed_choices():
    f10 = T.detect_features(TRT10)
    plan = T.plan_build(f10, "fp16", strongly_typed=True)
    assert plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == () and plan.onnx_precision == "fp16"
    with pytest.raises(ConfigError, match="no strongly typed networks"):
        T.plan_build(T.detect_features(TRT85), "int8", strongly_typed=True)
    with pytest.raises(ConfigError, match="every network is strongly typed"):
        T.plan_build(T.detect_features(TRT11), "fp16", strongly_typed=False)
    with pytest.raises(ConfigError, match="unknown precision"):
        T.plan_build(f10, "int4")
    no_flag = T.detect_features(fake_trt("12.0", (), ("TF32",)))  # a future TensorRT without the (no-op) flag
    assert T.plan_build(no_flag, "int8").network_flags == ()


def test_feature_detection_reads_attributes_only():
    f = T.detect_features(TRT85)
    assert (f.explicit_batch_flag, f.strongly_typed_flag, f.fp16_flag, f.int8_flag, f.weak_typing) == (True, False, True, True, True)
    assert not T.detect_features(SimpleNamespace()).weak_typing
    assert T.detect_features(TRT11).version == "11.4.0.106"


def test_profile_shapes():
    assert T.profile_shapes((3, 32, 32), 1, 32, 256) == ((1, 3, 32, 32), (32, 3, 32, 32), (256, 3, 32, 32))
    for bad in ((0, 1, 2), (4, 2, 8), (1, 8, 4)):
        with pytest.raises(ConfigError, match="batch range"):
            T.profile_shapes((3, 32, 32), *bad)
    with pytest.raises(ConfigError):
        T.profile_shapes((3, 32), 1, 1, 1)


class _Err:
    def __init__(self, node, desc, name=None):
        self._node, self._desc = node, desc
        if name is not None:  # TensorRT 10+ errors know the node's name and operator
            self.node_name = lambda: name
            self.node_operator = lambda: "Resize"

    def node(self):
        return self._node

    def desc(self):
        return self._desc

    def code(self):
        return SimpleNamespace(name="UNSUPPORTED_NODE")


def test_parser_errors_node_by_node():
    p85 = SimpleNamespace(num_errors=2, get_error=lambda i: [_Err(3, "bad scales"), _Err(7, "opset 18")][i])
    assert T.format_parser_errors(p85) == ["node 3: UNSUPPORTED_NODE: bad scales", "node 7: UNSUPPORTED_NODE: opset 18"]
    p10 = SimpleNamespace(num_errors=1, get_error=lambda i: _Err(3, "bad scales", "/up/Resize"))
    assert T.format_parser_errors(p10) == ["node 3 (/up/Resize: Resize): UNSUPPORTED_NODE: bad scales"]


def test_runner_refuses_a_sidecar_of_another_backend(tmp_path):
    """The compatibility rule itself is tested case by case in tests/test_artifacts.py (shared with C++)."""
    from gear_trt.artifacts import DeployMeta, Preprocess, make_sidecar, write_sidecar

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    meta = DeployMeta(Preprocess(input_size=32), tuple("abcdefghij"))
    write_sidecar(engine, make_sidecar(meta, "onnxruntime", engine, {"version": "1.0"}))
    with pytest.raises(ArtifactError, match="no 'tensorrt' section, so this is not a tensorrt engine .the sidecar is for onnxruntime"):
        T.TrtRunner(engine)
    write_sidecar(engine, make_sidecar(meta, "tensorrt", engine, {"version": "10.3.0.30", "min_batch": 2, "max_batch": 64}))
    runner = T.TrtRunner(engine, device=0)
    assert (runner.min_batch, runner.max_batch, runner.meta.classes) == (2, 64, meta.classes)


def test_stub_only_tensorrt_is_not_mistaken_for_tensorrt():
    """tensorrt-stubs installs an empty `tensorrt` package: importable, but no Builder."""
    ok, why = T.tensorrt_status()
    if T.trt is None or not hasattr(T.trt, "Builder"):
        assert not T.tensorrt_importable() and not ok and "not importable" in why


def test_stub_repair():
    spec = importlib.util.spec_from_file_location("typecheck_tensorrt", ROOT / "tools" / "typecheck_tensorrt.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    line = "    def f(self: X, in: list[int], out: int = None, size: int) -> bool:"
    fixed = tool.repair_def(line)
    assert fixed == "    def f(self: X, in_: list[int], out: int = None, size: int = ...) -> bool:"
    compile(fixed.strip() + " ...", "x", "exec")
    text = "from __future__ import annotations\ndef g(a: bool) -> bool: ...\nbool: DataType\n"
    out = tool.unshadow_bool(text)
    assert "def g(a: _builtins.bool) -> _builtins.bool" in out and "\nbool: DataType" in out and "import builtins as _builtins" in out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_against_tensorrt_stubs():
    """`python tools/typecheck_tensorrt.py`: mypy sees the real TensorRT API (a canary proves it) and the layer passes."""
    from importlib import metadata

    try:
        metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    res = subprocess.run([sys.executable, "tools/typecheck_tensorrt.py"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success" in res.stdout


# --- real TensorRT (skipped without TensorRT and a GPU) ---------------------------------------------

@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not T.tensorrt_status()[0], reason="TensorRT with a GPU is not available")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_build_and_run(precision, trained_checkpoint, real_test_set, tmp_path):
    """Build with the installed TensorRT (8.5 .. 11), run on the GPU, compare accuracy with onnxruntime."""
    from gear_trt.backends import load_runner
    from gear_trt.evaluate.accuracy import clean_accuracy
    from gear_trt.export.deploy import (
        CalibrationOptions,
        EngineOptions,
        build_checkpoint_engines,
    )
    from gear_trt.export.layout import source_checkpoints

    cp = source_checkpoints(trained_checkpoint, out=tmp_path)[0]
    cache = tmp_path / "timing.cache"
    engines = build_checkpoint_engines(cp, [precision], "tensorrt", EngineOptions(max_batch=256, timing_cache=cache),
                                       calib=CalibrationOptions(manifest=tmp_path / "calib.json"))
    engine = engines[precision]
    assert engine.is_file() and cache.is_file()
    ds = real_test_set.subset(list(range(1000)))
    with load_runner(engine) as trt_runner, load_runner(cp.onnx("fp32")) as ort_runner:
        x = np.random.default_rng(0).standard_normal((8, 3, 32, 32), dtype=np.float32)
        assert trt_runner.infer(x).shape == (8, 10) and trt_runner.infer(x[:1]).shape == (1, 10)
        a_trt, a_ort = clean_accuracy(trt_runner, ds).accuracy, clean_accuracy(ort_runner, ds).accuracy
    assert abs(a_trt - a_ort) <= {"fp32": 0.002, "fp16": 0.005, "int8": 0.015}[precision]
