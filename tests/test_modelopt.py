"""INT8 through NVIDIA ModelOpt: the parts that need no ModelOpt run everywhere (its Q/DQ form in our
checker, the guard that keeps tensorrt-stubs from passing for TensorRT); the end-to-end test runs
where `nvidia-modelopt[onnx]` is installed and skips cleanly elsewhere (CI: see docs/deploy.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gear_trt.export import precision as P


def _conv_model(weight_form: str) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(W) where W reaches the Conv as ORT writes it (int8 initializer -> DQ) or as
    ModelOpt does (float initializer -> Q -> DQ), per output channel."""
    w = np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3) / 100 - 0.5
    scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(scale, "w_scale"), numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"), numpy_helper.from_array(np.array(0, np.int8), "x_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"])]
    if weight_form == "onnxruntime":
        q = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
        inits.append(numpy_helper.from_array(q, "w_q"))
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], axis=0))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
        nodes += [helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["wq"], axis=0),
                  helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zp"], ["wd"], axis=0)]
    nodes.append(helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("form", ["onnxruntime", "modelopt"])
def test_qdq_summary_reads_both_weight_forms(form):
    model = _conv_model(form)
    onnx.checker.check_model(model, full_check=True)
    s = P.qdq_summary(model)
    assert s["weight_tensors"] == 1 and s["per_channel_weights"] and s["zero_points_all_zero"] and s["dtypes"] == ["int8"]
    assert (s["quantize_nodes"], s["dequantize_nodes"]) == ((1, 2) if form == "onnxruntime" else (2, 2))


def test_a_stub_only_tensorrt_is_hidden_from_modelopt(tmp_path, monkeypatch):
    """tensorrt-stubs installs an empty `tensorrt` package. ModelOpt decides at import time that
    TensorRT is present if `import tensorrt` works, and then fails on trt.Logger. A stand-in
    ModelOpt records what it saw; the real `tensorrt` entry is back afterwards."""
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text("")  # stub-only: no Logger
    pkg = tmp_path / "modelopt" / "onnx" / "quantization"
    pkg.mkdir(parents=True)
    (tmp_path / "modelopt" / "__init__.py").write_text("")
    (tmp_path / "modelopt" / "onnx" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("try:\n    import tensorrt\n    SAW_TENSORRT = True\nexcept ImportError:\n    SAW_TENSORRT = False\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ours = lambda name: name == "tensorrt" or name.startswith(("tensorrt.", "modelopt"))  # noqa: E731
    before = {name: module for name, module in sys.modules.items() if ours(name)}
    try:
        for name in before:
            del sys.modules[name]
        import tensorrt

        module = P._modelopt_quantization()
        assert module.SAW_TENSORRT is False
        assert sys.modules["tensorrt"] is tensorrt  # restored for everyone else
        for name in [m for m in sys.modules if m.startswith("modelopt")]:
            del sys.modules[name]
        tensorrt.Logger = object  # a TensorRT that looks real is left visible
        assert P._modelopt_quantization().SAW_TENSORRT is True
    finally:  # the stand-ins must not outlive this test
        for name in [m for m in sys.modules if ours(m)]:
            del sys.modules[name]
        sys.modules.update(before)


def test_modelopt_int8_end_to_end(tmp_path, trained_checkpoint, real_test_set):
    # find_spec, not importorskip: importing ModelOpt here would bypass the stub guard under test
    if importlib.util.find_spec("modelopt") is None:
        pytest.skip("nvidia-modelopt[onnx] is not installed (optional extra `modelopt`)")
    import onnxruntime as ort

    from gear_trt.artifacts import get_meta, preprocess_images, read_meta
    from gear_trt.data import load_source
    from gear_trt.export import calibration as calib
    from gear_trt.export.onnx import export_checkpoint

    fp32 = export_checkpoint(trained_checkpoint, tmp_path / "m.fp32.onnx", real_images=real_test_set.images[:64])
    meta = read_meta(fp32)
    train = load_source("builtin", "train", progress=False)
    manifest = calib.make_manifest(train, source="builtin", size=256, seed=0)
    int8 = P.to_int8_qdq(fp32, tmp_path / "m.int8.onnx", calib.calibration_reader(manifest, train, meta),
                         producer="modelopt", calibration=manifest.summary())
    model = onnx.load(str(int8))
    s = P.qdq_summary(model)
    assert s["opset"] >= 19 and s["per_channel_weights"] and s["zero_points_all_zero"] and s["dtypes"] == ["int8"]
    assert get_meta(model).lineage["transform"].startswith("int8 Q/DQ (modelopt")
    x = preprocess_images(real_test_set.images[:500], meta.preprocess).numpy()
    labels = real_test_set.labels[:500].numpy()

    def accuracy(path: Path) -> float:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return float((session.run(None, {meta.input_name: x})[0].argmax(1) == labels).mean())

    assert accuracy(int8) >= accuracy(fp32) - 0.02
