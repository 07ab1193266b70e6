"""The Runner contract, checked on every backend available here (torch, onnxruntime, its optimised
"engine", TensorRT on a GPU machine), plus load_runner, sidecars, accuracy/latency helpers and the
build-engine / eval / bench commands on the CPU path."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from gear_trt.artifacts import preprocess_images, sidecar_path
from gear_trt.backends import artifact_kind, available_backends, load_runner
from gear_trt.backends.onnxrt import OrtRunner, build_ort_engine, resolve_providers
from gear_trt.backends.torch_backend import TorchRunner
from gear_trt.energy import EnergyMeter, NullMeter
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError
from gear_trt.evaluate.accuracy import clean_accuracy
from gear_trt.evaluate.latency import measure_latency
from gear_trt.evaluate.table import BenchRow, benchmark_artifact, format_table
from gear_trt.export.onnx import export_checkpoint
from gear_trt.models import load_model

TRT_OK = available_backends()["tensorrt"] == ""


@pytest.fixture(scope="module")
def artifacts(trained_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("backends")
    fp32 = export_checkpoint(trained_checkpoint, out / "m.fp32.onnx", parity=False)
    arts = {"checkpoint": trained_checkpoint, "onnx": fp32, "ort_engine": build_ort_engine(fp32, out / "m.fp32.ort.onnx"), "dir": out}
    if TRT_OK:
        from gear_trt.backends.tensorrt import build_engine

        arts["trt_engine"] = build_engine(fp32, out / "m.fp32.engine", precision="fp32", max_batch=64)
    return arts


@pytest.fixture(scope="module")
def reference(trained_checkpoint):
    model, _, _ = load_model(trained_checkpoint)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return x.numpy(), model(x).numpy()


CASES = [
    pytest.param("checkpoint", id="torch"),
    pytest.param("onnx", id="onnxruntime"),
    pytest.param("ort_engine", id="onnxruntime-optimised"),
    pytest.param("trt_engine", id="tensorrt", marks=[pytest.mark.tensorrt, pytest.mark.gpu,
                                                     pytest.mark.skipif(not TRT_OK, reason="TensorRT with a GPU is not available")]),
]


@pytest.mark.parametrize("kind", CASES)
def test_runner_contract(kind, artifacts, reference):
    x, ref = reference
    runner = load_runner(artifacts[kind], threads=1)
    with pytest.raises(ConfigError, match="not active"):
        runner.infer(x)
    with runner:
        assert runner.is_active and runner.precision == "fp32" and runner.num_classes == 10
        out = runner.infer(x)
        assert out.shape == (5, 10) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        np.testing.assert_allclose(runner.infer(torch.from_numpy(x[:1])), out[:1], rtol=1e-5, atol=1e-5)  # torch input, batch 1
        assert len(runner.latencies_ms) == 2 and runner.last_latency_ms > 0
        for bad, msg in ((x.astype(np.float64), "dtype is float64"), (x[:, :2], "input shape"), (x[0], "input shape"),
                         ((x * 255).astype(np.uint8), "dtype is uint8"), ([1, 2, 3], "numpy array or torch tensor"), (x[:0], "batch of 0")):
            with pytest.raises(ConfigError, match=msg):
                runner.infer(bad)
        assert len(runner.latencies_ms) == 2  # rejected inputs are not timed
        if runner.max_batch is not None:
            with pytest.raises(ConfigError, match="outside 1.."):
                runner.infer(np.zeros((runner.max_batch + 1, 3, 32, 32), np.float32))
        assert runner.describe()["backend"] == runner.backend
        with pytest.raises(ConfigError, match="already active"):
            runner.activate()
    assert not runner.is_active
    with pytest.raises(ConfigError, match="not active"):
        runner.infer(x)
    with runner:  # a runner can be activated again
        np.testing.assert_allclose(runner.infer(x), out, rtol=1e-6, atol=1e-6)


def test_load_runner_picks_by_artifact(artifacts, tmp_path):
    assert isinstance(load_runner(artifacts["checkpoint"]), TorchRunner)
    assert isinstance(load_runner(artifacts["onnx"]), OrtRunner)
    assert artifact_kind("x.plan") == "engine" and artifact_kind("x.pth") == "checkpoint"
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot tell"):
        load_runner(tmp_path / "model.bin")
    with pytest.raises(ArtifactError, match="does not exist"):
        load_runner(tmp_path / "missing.onnx")


def test_engine_without_tensorrt_fails_clearly(artifacts, tmp_path):
    """An engine with a valid sidecar loads its metadata anywhere; running it needs TensorRT and a GPU."""
    from gear_trt.artifacts import make_sidecar, read_meta, write_sidecar
    from gear_trt.backends.tensorrt import TrtRunner

    if TRT_OK:
        pytest.skip("TensorRT is available here")
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"not really an engine")
    section = {"version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "precision": "fp16", "min_batch": 1, "opt_batch": 8, "max_batch": 32}
    write_sidecar(engine, make_sidecar(read_meta(artifacts["onnx"]), "tensorrt", engine, section))
    runner = load_runner(engine)
    assert isinstance(runner, TrtRunner) and runner.max_batch == 32 and runner.meta.classes
    with pytest.raises(BackendUnavailable, match="TensorRT cannot run here"):
        runner.activate()
    engine.write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="not the file its sidecar describes"):
        load_runner(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(ArtifactError, match="no metadata sidecar"):
        load_runner(engine)


def test_ort_engine_sidecar_is_checked(artifacts):
    side = json.loads(sidecar_path(artifacts["ort_engine"]).read_text())
    assert side["backend"] == "onnxruntime" and side["precision"] == "fp32" and side["classes"]
    assert side["onnxruntime"]["onnx_sha256"] and side["onnxruntime"]["cpu"]
    stale = artifacts["dir"] / "stale.fp32.ort.onnx"
    stale.write_bytes(artifacts["ort_engine"].read_bytes())
    side["onnxruntime"]["version"] = "0.0.1"
    side["engine"] = stale.name
    sidecar_path(stale).write_text(json.dumps(side))
    with pytest.raises(ArtifactError, match="rebuild it here: `gear-trt build-engine"):
        load_runner(stale)


def test_providers_are_explicit():
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="unknown onnxruntime device"):
        resolve_providers("tpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
            resolve_providers("cuda")


def test_accuracy_matches_across_backends(artifacts, real_test_set):
    ds = real_test_set.subset(list(range(0, len(real_test_set), max(1, len(real_test_set) // 1000))))
    with load_runner(artifacts["checkpoint"]) as t, load_runner(artifacts["onnx"], threads=2) as o:
        a_torch, a_ort = clean_accuracy(t, ds, batch_size=128), clean_accuracy(o, ds, batch_size=97)
        model, _, _ = load_model(artifacts["checkpoint"])
        with torch.no_grad():
            direct = (model(preprocess_images(ds.images, o.meta.preprocess)).argmax(1) == ds.labels).float().mean().item()
    assert a_torch.total == a_ort.total == len(ds)
    assert a_torch.accuracy == pytest.approx(direct) and abs(a_ort.accuracy - a_torch.accuracy) <= 1 / len(ds)


def test_latency_stats(artifacts):
    with load_runner(artifacts["onnx"], threads=1) as r:
        s = measure_latency(r, batch_size=1, warmup=3, iterations=30)
        big = measure_latency(r, batch_size=16, warmup=1, iterations=5)
    assert s.iterations == 30 and 0 < s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms
    assert big.batch == 16 and big.throughput > 0
    with pytest.raises(ConfigError):
        measure_latency(r, batch_size=0)


def test_benchmark_rows_and_table(artifacts, real_test_set):
    small = real_test_set.subset(list(range(200)))
    ok = benchmark_artifact(artifacts["onnx"], model="m", data=small, warmup=2, iterations=10, threads=1, throughput_batch=8)
    bad = benchmark_artifact(artifacts["dir"] / "missing.onnx", model="gone")
    assert ok.status == "ok" and ok.backend == "onnxruntime" and 0 <= ok.clean_acc <= 1 and ok.latency.iterations == 10
    assert ok.size_bytes == artifacts["onnx"].stat().st_size and ok.throughput.batch == 8
    assert bad.status.startswith("failed:")
    text = format_table([ok, bad, BenchRow("x", "int8", "tensorrt", "x.engine", status="skipped")])
    lines = text.splitlines()
    assert len(lines) == 5 and "p99 ms" in lines[0] and "onnxruntime" in lines[2] and "failed" in lines[3]


class ConstantPowerMeter(EnergyMeter):
    """5 W on the real clock: the bench's energy window must come out as 5 J per second."""

    kind = "fake"
    source = "fake: 5 W"  # type: ignore[assignment]

    def _begin(self) -> None:
        self.t = time.perf_counter()

    def _end(self) -> tuple[float, dict]:
        return 5.0 * (time.perf_counter() - self.t), {}


def test_benchmark_energy_per_image(artifacts):
    row = benchmark_artifact(artifacts["onnx"], model="m", warmup=1, iterations=5, threads=1, throughput_batch=8,
                             meter=ConstantPowerMeter(), energy_seconds=0.3)
    energy = row.details["energy"]
    assert energy["seconds"] >= 0.3 and energy["images"] % 8 == 0 and energy["images"] >= 8
    assert energy["joules"] == pytest.approx(5.0 * energy["seconds"], rel=0.05)
    assert row.joules_per_image == pytest.approx(energy["joules"] / energy["images"])
    assert "mJ/img" in format_table([row]) and f"{1e3 * row.joules_per_image:.3f}" in format_table([row])
    plain = benchmark_artifact(artifacts["onnx"], model="m", warmup=1, iterations=5, threads=1, throughput_batch=8, meter=NullMeter())
    assert plain.joules_per_image is None and "energy" not in plain.details


def test_build_engine_cli_uses_onnxruntime_without_tensorrt(artifacts, capsys):
    from gear_trt.cli.main import main

    if TRT_OK:
        pytest.skip("TensorRT is available here")
    rc = main(["build-engine", str(artifacts["onnx"]), "--out", str(artifacts["dir"] / "eng")])
    err = capsys.readouterr().err
    assert rc == 0 and "using onnxruntime (TensorRT is not importable)" in err
    engine = artifacts["dir"] / "eng" / "m.fp32.ort.onnx"
    assert engine.is_file() and sidecar_path(engine).is_file()
    assert main(["build-engine", str(artifacts["onnx"]), "--backend", "tensorrt"]) == 2
    assert "TensorRT cannot run here" in capsys.readouterr().err
    # an int8 engine from an fp32 file would be a silent precision change: refused
    assert main(["build-engine", str(artifacts["onnx"]), "--precision", "int8", "--out", str(artifacts["dir"] / "eng")]) == 2
    assert "export that precision" in capsys.readouterr().err


def test_eval_and_bench_cli(artifacts, tmp_path, capsys):
    from gear_trt.cli.main import main

    out = tmp_path / "eval.json"
    assert main(["eval", str(artifacts["onnx"]), "--limit", "100", "--json", str(out), "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["backend"] == "onnxruntime" and res["clean"]["total"] == 100
    assert main(["bench", str(artifacts["onnx"]), str(artifacts["checkpoint"]), "--limit", "50", "--iterations", "5", "--warmup", "1",
                 "--throughput-batch", "4", "--json", str(tmp_path / "b.json")]) == 0
    table = json.loads((tmp_path / "b.json").read_text())
    assert [r["backend"] for r in table["rows"]] == ["onnxruntime", "torch"] and table["environment"]["onnxruntime"]
    assert "clean %" in capsys.readouterr().out


def test_bench_of_a_run_feeds_the_report(trained_checkpoint, tmp_path, capsys):
    """`gear-trt bench RUN` writes RUN/bench.json by default, and `gear-trt report RUN` shows those rows."""
    import shutil

    from gear_trt.cli.main import main
    from gear_trt.report import build_report

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_checkpoint, run / "checkpoints" / "backbone.pt")
    (run / "summary.json").write_text(json.dumps({"pipeline": "gearnn2", "stages": [{"name": "backbone", "params": 1}]}))
    assert main(["bench", str(run), "--limit", "50", "--iterations", "5", "--warmup", "1", "--throughput-batch", "4",
                 "--threads", "1", "--energy", "none"]) == 0
    rows = json.loads((run / "bench.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["model"] == "backbone" and rows[0]["joules_per_image"] is None
    _, md = build_report(run)
    deployment = md.read_text().split("## Deployment")[1]
    line = next(ln for ln in deployment.splitlines() if ln.startswith("| backbone"))
    assert f"{100 * rows[0]['clean_acc']:.2f}" in line and f"{rows[0]['latency']['p50_ms']:.3f}" in line


def test_export_cli_reuses_up_to_date_files(trained_checkpoint, tmp_path, capsys):
    from gear_trt.cli.main import main

    args = ["export", str(trained_checkpoint), "--precision", "fp32,int8", "--out", str(tmp_path), "--calib-size", "64", "--parity-data", "none"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "export:" in first.err and "int8:" in first.err and (tmp_path / "calibration.json").is_file()
    assert first.out.split() == ["backbone", "fp32", str(tmp_path / "backbone.fp32.onnx"), "backbone", "int8", str(tmp_path / "backbone.int8.onnx")]
    stamp = (tmp_path / "backbone.int8.onnx").stat().st_mtime_ns
    assert main(args) == 0
    assert capsys.readouterr().err == ""  # nothing rebuilt: the files record the checkpoint and calibration they came from
    assert (tmp_path / "backbone.int8.onnx").stat().st_mtime_ns == stamp
    assert main(args[:-4] + ["--calib-size", "64", "--calib-method", "percentile", "--parity-data", "none"]) == 0
    assert "int8:" in capsys.readouterr().err  # another calibration method: a new int8 file
