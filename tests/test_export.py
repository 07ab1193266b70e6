"""Export to ONNX (parity with PyTorch, metadata, dynamic batch) and precision transforms (fp16, INT8 Q/DQ)
measured in onnxruntime on real CIFAR-10 test images; calibration-set manifests."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from gear_trt.artifacts import deploy_meta_for, get_meta, preprocess_images, read_meta, set_meta
from gear_trt.data import ImageSet
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError, DataError
from gear_trt.export import calibration as calib
from gear_trt.export.onnx import (
    check_parity,
    export_checkpoint,
    export_onnx,
)
from gear_trt.export.precision import (
    CalibrationReader,
    qdq_summary,
    to_fp16,
    to_int8_qdq,
)
from gear_trt.models import build_model, load_model, scaled_spec


def ort_logits(path, x: np.ndarray, batch: int = 500) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


@pytest.fixture(scope="module")
def exported(trained_checkpoint, real_test_set, tmp_path_factory):
    """fp32, fp16 and int8 ONNX of the trained checkpoint, with the inputs the tests share."""
    out = tmp_path_factory.mktemp("onnx")
    fp32 = export_checkpoint(trained_checkpoint, out / "m.fp32.onnx", real_images=real_test_set.images[:64])
    meta = read_meta(fp32)
    train = __import__("gear_trt.data", fromlist=["load_source"]).load_source("builtin", "train", progress=False)
    manifest = calib.make_manifest(train, source="builtin", size=512, seed=0)
    reader = calib.calibration_reader(manifest, train, meta)
    int8 = to_int8_qdq(fp32, out / "m.int8.onnx", reader, calibration=manifest.summary())
    fp16 = to_fp16(fp32, out / "m.fp16.onnx")
    x = preprocess_images(real_test_set.images, meta.preprocess).numpy()
    return {"fp32": fp32, "fp16": fp16, "int8": int8, "x": x, "labels": real_test_set.labels.numpy(), "manifest": manifest, "dir": out}


@pytest.fixture(scope="module")
def fp32_logits(exported):
    return ort_logits(exported["fp32"], exported["x"])


# --- export -------------------------------------------------------------------------------------

def test_export_matches_pytorch_on_random_and_real_images(exported, trained_checkpoint):
    model, _, _ = load_model(trained_checkpoint)
    real = torch.from_numpy(exported["x"][:512])
    report = check_parity(model, exported["fp32"], [("random", torch.randn(64, 3, 32, 32)), ("real", real)])
    assert report.ok, report.to_dict()
    for r in report.results:
        assert r.max_abs_diff <= r.tolerance and r.top1_agreement == 1.0
    with torch.no_grad():
        ref = model(real).numpy()
    assert np.abs(ort_logits(exported["fp32"], real.numpy()) - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_export_writes_metadata_opset_and_dynamic_batch(exported, trained_checkpoint):
    proto = onnx.load(str(exported["fp32"]))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert not proto.graph.initializer[0].data_location  # weights inside the file
    meta = get_meta(proto)
    _, spec, payload = load_model(trained_checkpoint)
    assert meta.spec == spec.to_dict() and meta.spec_hash == spec.hash
    assert meta.classes == tuple(payload["classes"]) and meta.precision == "fp32"
    assert meta.preprocess.input_size == 32 and meta.preprocess.mean == (0.4914, 0.4822, 0.4465)
    assert meta.lineage["checkpoint_sha256"] == __import__("gear_trt.io", fromlist=["sha256_file"]).sha256_file(trained_checkpoint)
    assert meta.lineage["opset"] == 17 and meta.lineage["exporter"] == "torchscript"
    assert not any(n.op_type == "Identity" for n in proto.graph.node)  # initializer aliases are inlined
    x = exported["x"]
    one, seven = ort_logits(exported["fp32"], x[:1]), ort_logits(exported["fp32"], x[:7])
    assert one.shape == (1, 10) and seven.shape == (7, 10)
    np.testing.assert_allclose(one[0], seven[0], rtol=1e-5, atol=1e-5)


def test_export_refuses_a_model_that_differs_from_pytorch(tmp_path, monkeypatch):
    """A wrong exporter result (here: another model's graph) fails loudly and writes nothing."""
    from gear_trt.export import onnx as onnx_export

    spec = scaled_spec("vgg19", 0.06)
    torch.manual_seed(0)
    right, wrong = build_model(spec).eval(), build_model(spec).eval()
    meta = deploy_meta_for(spec, [str(i) for i in range(10)])
    real_export = onnx_export._export_torchscript
    monkeypatch.setattr(onnx_export, "_export_torchscript", lambda model, example, meta, opset: real_export(wrong, example, meta, opset))
    with pytest.raises(ArtifactError, match="differs from PyTorch on random inputs"):
        export_onnx(right, spec, meta, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_export_option_errors(tmp_path):
    spec = scaled_spec("vgg19", 0.06)
    meta = deploy_meta_for(spec, [str(i) for i in range(10)])
    with pytest.raises(ConfigError, match="opset 18 or newer"):
        export_onnx(build_model(spec), spec, meta, tmp_path / "m.onnx", dynamo=True, opset=17)
    with pytest.raises(ConfigError, match="class names"):
        deploy_meta_for(spec, ["a", "b"])
    with pytest.raises(ArtifactError, match="no gear-trt metadata"):
        get_meta(onnx.ModelProto())


def test_dynamo_export(tmp_path):
    spec = scaled_spec("vgg19", 0.06)
    meta = deploy_meta_for(spec, [str(i) for i in range(10)])
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="onnxscript"):
            export_onnx(build_model(spec), spec, meta, tmp_path / "m.onnx", dynamo=True)
        return
    path = export_onnx(build_model(spec), spec, meta, tmp_path / "m.onnx", dynamo=True)
    assert read_meta(path).lineage["exporter"] == "dynamo"


def test_metadata_replaced_not_duplicated(exported):
    proto = onnx.load(str(exported["fp32"]))
    meta = get_meta(proto)
    set_meta(proto, meta)
    set_meta(proto, meta)
    assert sum(p.key == "gear_trt" for p in proto.metadata_props) == 1


# --- fp16 ---------------------------------------------------------------------------------------

def test_fp16_keeps_float32_io_and_accuracy(exported, fp32_logits):
    proto = onnx.load(str(exported["fp16"]))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == f32 and proto.graph.output[0].type.tensor_type.elem_type == f32
    kinds = {i.data_type for i in proto.graph.initializer if i.data_type in (f32, f16)}
    assert kinds == {f16}
    assert get_meta(proto).precision == "fp16"
    n = 2000
    logits = ort_logits(exported["fp16"], exported["x"][:n])
    assert logits.dtype == np.float32
    ref = fp32_logits[:n]
    agree = (logits.argmax(1) == ref.argmax(1)).mean()
    assert agree >= 0.995, agree
    assert np.abs(logits - ref).max() < 0.05 * np.abs(ref).max()
    with pytest.raises(ConfigError, match="fp16 model"):
        to_fp16(exported["fp16"], exported["dir"] / "twice.onnx")


# --- int8 ---------------------------------------------------------------------------------------

def test_int8_qdq_is_symmetric_per_channel_opset17(exported):
    proto = onnx.load(str(exported["int8"]))
    s = qdq_summary(proto)
    assert s["opset"] == 17 and s["quantize_nodes"] > 0
    assert s["zero_points_all_zero"] and s["dtypes"] == ["int8"]
    meta = get_meta(proto)
    float_nodes = meta.lineage["float_nodes"]
    assert 1 <= len(float_nodes) <= 2  # the classifier, and at most one conv the sensitivity search picked
    assert s["per_channel_weights"] and s["weight_tensors"] == 16 - (len(float_nodes) - 1)
    inits = {i.name: i for i in proto.graph.initializer}
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    assert inits[gemm.input[1]].data_type == onnx.TensorProto.FLOAT and float_nodes[0] == gemm.name
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            w = onnx.numpy_helper.to_array(inits[node.input[0]])
            scale = onnx.numpy_helper.to_array(inits[node.input[1]])
            zp = onnx.numpy_helper.to_array(inits[node.input[2]])
            assert w.dtype == np.int8 and not zp.any() and zp.dtype == np.int8
            axis = {a.name: a.i for a in node.attribute}.get("axis", 1)
            assert scale.shape == (w.shape[axis],) and w.min() >= -127  # symmetric weights use -127..127
    assert meta.precision == "int8" and meta.lineage["calibration"]["digest"] == exported["manifest"].digest


def test_int8_accuracy_within_1pp_of_fp32_on_real_images(exported, fp32_logits):
    labels = exported["labels"]
    acc32 = (fp32_logits.argmax(1) == labels).mean()
    acc8 = (ort_logits(exported["int8"], exported["x"]).argmax(1) == labels).mean()
    assert acc32 > 0.25, f"the test model did not learn ({acc32:.3f})"
    assert abs(acc8 - acc32) <= 0.01, (acc32, acc8)


def test_int8_corruption_accuracy_within_1p5pp(exported, real_test_set):
    corruptions = pytest.importorskip("gear_trt.corruptions")
    idx = torch.from_numpy(np.linspace(0, len(real_test_set) - 1, 500).round().astype(np.int64))
    images, labels = real_test_set.images[idx], real_test_set.labels[idx].numpy()
    pre = read_meta(exported["fp32"]).preprocess
    acc = {"fp32": [], "int8": []}
    for name in corruptions.CORRUPTIONS:
        x = preprocess_images(corruptions.corrupt(images, name, 3, seed=0, preset="cifar", indices=idx), pre).numpy()
        for p, scores in acc.items():
            scores.append((ort_logits(exported[p], x).argmax(1) == labels).mean())
    mean32, mean8 = float(np.mean(acc["fp32"])), float(np.mean(acc["int8"]))
    assert mean32 > 0.15
    assert abs(mean8 - mean32) <= 0.015, (mean32, mean8)


def test_int8_needs_the_fp32_model_and_matching_reader(exported):
    reader = CalibrationReader(np.zeros((4, 3, 32, 32), np.float32), "other")
    with pytest.raises(ConfigError, match="feeds 'other'"):
        to_int8_qdq(exported["fp32"], exported["dir"] / "x.onnx", reader)
    with pytest.raises(ConfigError, match="int8 model"):
        to_int8_qdq(exported["int8"], exported["dir"] / "x.onnx", CalibrationReader(np.zeros((4, 3, 32, 32), np.float32)))
    with pytest.raises(ConfigError, match="unknown calibration method"):
        to_int8_qdq(exported["fp32"], exported["dir"] / "x.onnx", CalibrationReader(np.zeros((4, 3, 32, 32), np.float32)), method="magic")


# --- calibration manifests ------------------------------------------------------------------------

def _toy_set(counts: list[int], size: int = 8) -> ImageSet:
    gen = torch.Generator().manual_seed(1)
    labels = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    images = torch.randint(0, 256, (len(labels), size, size, 3), generator=gen, dtype=torch.uint8)
    return ImageSet(images, labels, tuple(f"c{k}" for k in range(len(counts))), "toy", "train")


def test_manifest_is_class_balanced_seeded_and_recorded(tmp_path):
    ds = _toy_set([100] * 10)
    m = calib.make_manifest(ds, source="toy", size=512 // 8, seed=0)
    assert m.size == 64 and sorted(m.per_class) == [6] * 6 + [7] * 4
    labels = ds.labels[list(m.indices)]
    assert torch.bincount(labels, minlength=10).tolist() == list(m.per_class)
    assert list(m.indices) == sorted(set(m.indices))
    assert calib.make_manifest(ds, source="toy", size=64, seed=0).indices == m.indices
    assert calib.make_manifest(ds, source="toy", size=64, seed=1).indices != m.indices
    m.save(tmp_path / "c.json")
    again = calib.load_manifest(tmp_path / "c.json")
    assert again == m and again.digest == m.digest
    assert torch.equal(calib.select(again, ds).images, ds.images[list(m.indices)])


def test_manifest_moves_shortfall_to_classes_with_images():
    ds = _toy_set([3, 50, 50, 50])
    m = calib.make_manifest(ds, source="toy", size=40, seed=0)
    assert m.per_class[0] == 3 and sum(m.per_class) == 40 and max(m.per_class) - min(m.per_class[1:]) <= 1
    with pytest.raises(DataError, match="asked for 200"):
        calib.make_manifest(ds, source="toy", size=200)


def test_manifest_detects_changed_data_and_edits(tmp_path):
    ds = _toy_set([20] * 4)
    m = calib.make_manifest(ds, source="toy", size=16)
    changed = ImageSet(ds.images.clone(), ds.labels, ds.classes, "toy")
    changed.images[m.indices[0]] ^= 1
    with pytest.raises(DataError, match="not the ones it recorded"):
        calib.select(m, changed)
    raw = m.to_dict()
    raw["indices"][0] += 1
    (tmp_path / "edited.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="was edited"):
        calib.load_manifest(tmp_path / "edited.json")
    with pytest.raises(ArtifactError, match="does not exist"):
        calib.load_manifest(tmp_path / "missing.json")


def test_calibration_reader_batches_and_rewinds():
    data = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    r = CalibrationReader(data, "input", batch_size=4)
    sizes = [len(b["input"]) for b in r]
    assert sizes == [4, 4, 2] and len(r) == 3 and r.get_next() is None
    r.rewind()
    np.testing.assert_array_equal(r.get_next()["input"], data[:4])
    with pytest.raises(ConfigError):
        CalibrationReader(np.zeros((0, 3, 2, 2), np.float32))


def test_resolve_manifest_makes_then_reuses(tmp_path):
    path = tmp_path / "calib.json"
    made, ds = calib.resolve_manifest(path, source="builtin", size=40, seed=3)
    assert path.is_file() and made.size == 40 and made.per_class == (4,) * 10
    reused, _ = calib.resolve_manifest(path, source="ignored-when-the-file-exists", size=999)
    assert len(ds) == 5000
    assert reused == made


def test_committed_builtin_manifest_still_matches_the_builtin_data():
    from pathlib import Path

    from gear_trt.data import load_source

    path = Path(__file__).resolve().parents[1] / "calibration" / "builtin-train-512-seed0.json"
    m = calib.load_manifest(path)
    assert (m.source, m.split, m.size, m.seed) == ("builtin", "train", 512, 0)
    assert len(calib.select(m, load_source("builtin", "train", progress=False))) == 512


def test_float_layer_search_picks_the_layer_that_stands_out(tmp_path, monkeypatch):
    """A layer whose quantization alone ruins the output is the one kept in float."""
    from gear_trt.export.precision import choose_float_layers

    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    model.graph.node.extend([onnx.helper.make_node("Conv", ["x"], ["y"], name=n) for n in ("a", "b", "c")])
    errors = {(): 1.0, ("b",): 0.1, ("a",): 0.9, ("c",): 0.95, ("b", "a"): 0.09, ("b", "c"): 0.095}
    reader = CalibrationReader(np.zeros((2, 3, 4, 4), np.float32))

    def quantize(excluded, dst):  # stands for a quantized model: the layers it keeps float
        return tuple(sorted(excluded, key="bac".index))

    import gear_trt.export.precision as P

    # fp32 logits are 0; a quantized model's logits are sqrt(its error), so the mean squared error is the error
    monkeypatch.setattr(P, "_logits", lambda m, data, name: np.zeros((1, 1)) if isinstance(m, bytes) else np.full((1, 1), errors[m] ** 0.5))
    chosen, scores = choose_float_layers(quantize, model, reader, [], 2, tmp_path)
    assert chosen == ["b"]  # "a" would cut the error by only 10%: not a layer that stands out
    assert scores == pytest.approx({"(none)": 1.0, "b": 0.1})
