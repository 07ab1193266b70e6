"""Run directories and manifests: layout, default location, refusal to overwrite, resumable stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.io import sha256_file
from gear_trt.pipeline import RunDir, default_run_dir, environment, gear_home, stage_entry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GEAR_TRT_HOME", str(tmp_path / "home"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def test_default_location_is_outside_the_working_directory(home, monkeypatch):
    run = RunDir.create(None, "train", argv=["train", "--arch", "vgg19"])
    assert run.path.parent == home / "home" / "runs" and run.path.name.startswith("train-")
    assert (run.checkpoints.is_dir(), run.logs.is_dir(), run.manifest_path.is_file()) == (True, True, True)
    assert list((home / "cwd").iterdir()) == []  # nothing written into the working directory
    assert default_run_dir("train") != default_run_dir("grow")
    (home / "home" / "runs" / default_run_dir("train").name).mkdir(parents=True)
    assert not default_run_dir("train").exists()  # never an existing directory
    monkeypatch.delenv("GEAR_TRT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg"))
    assert gear_home() == home / "xdg" / "gear-trt"


def test_create_refuses_to_overwrite_and_resume_needs_a_run(home):
    out = home / "run"
    RunDir.create(out, "train", argv=[])
    with pytest.raises(ConfigError, match="already exists and is not empty.*--resume"):
        RunDir.create(out, "train", argv=[])
    (home / "file").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        RunDir.create(home / "file", "train", argv=[])
    with pytest.raises(ArtifactError, match="nothing to resume"):
        RunDir.create(home / "missing", "train", resume=True, argv=[])
    with pytest.raises(ConfigError, match="--resume needs"):
        RunDir.create(None, "train", resume=True, argv=[])
    (home / "empty").mkdir()
    RunDir.create(home / "empty", "train", argv=[])  # an empty directory is fine
    again = RunDir.create(out, "train", resume=True, argv=["--resume"])
    assert [i["argv"] for i in again.manifest.data["invocations"]] == [[], ["--resume"]]


def test_manifest_records_environment_and_stages(home):
    run = RunDir.create(home / "run", "train", argv=["x"])
    env = run.manifest.data["environment"]
    assert env["python"].count(".") == 2 and env["gear_trt"] and env["cpu_count"] >= 1 and "torch" in env
    run.write_config({"arch": "vgg19", "epochs": 3})
    assert json.loads(run.config_path.read_text()) == {"arch": "vgg19", "epochs": 3}

    ckpt = run.checkpoint("backbone")
    ckpt.write_bytes(b"weights")
    run.manifest.start_stage("backbone", {"epochs": 3, "widths": (8, 8)})
    assert run.manifest.stage("backbone")["status"] == "running"
    assert not run.manifest.is_done("backbone")
    run.manifest.finish_stage("backbone", artifacts=[ckpt], metrics={"clean_acc": 0.5})

    reread = RunDir.open(run.path).manifest  # everything is on disk
    record = reread.stage("backbone")
    assert record["status"] == "done" and record["seconds"] >= 0 and record["metrics"] == {"clean_acc": 0.5}
    assert record["artifacts"] == {"checkpoints/backbone.pt": sha256_file(ckpt)}
    assert record["params"] == {"epochs": 3, "widths": [8, 8]}
    assert reread.is_done("backbone") and reread.is_done("backbone", {"epochs": 3, "widths": (8, 8)})
    assert not reread.is_done("backbone", {"epochs": 4, "widths": (8, 8)})
    ckpt.write_bytes(b"changed")
    assert not reread.is_done("backbone")  # an artifact that changed means the stage must run again
    ckpt.unlink()
    assert not reread.is_done("backbone")


def test_run_stage_records_failures_and_interruptions(home):
    run = RunDir.create(home / "run", "grow", argv=[])
    with pytest.raises(ValueError):
        with run.manifest.run_stage("grow", {"ratio": 0.9}):
            raise ValueError("boom")
    assert run.manifest.stage("grow")["status"] == "failed" and "boom" in run.manifest.stage("grow")["error"]
    with pytest.raises(KeyboardInterrupt):
        with run.manifest.run_stage("era"):
            raise KeyboardInterrupt
    assert run.manifest.stage("era")["status"] == "interrupted"
    art = run.path / "growth.json"
    with run.manifest.run_stage("grow", {"ratio": 0.9}) as out:
        art.write_text("{}")
        out["artifacts"].append(art)
        out["metrics"]["params"] = 123
    rec = RunDir.open(run.path).manifest.stage("grow")
    assert rec["status"] == "done" and "error" not in rec and rec["artifacts"] == {"growth.json": sha256_file(art)}
    assert rec["metrics"] == {"params": 123}


def test_logger_appends_timestamped_lines(home):
    run = RunDir.create(home / "run", "train", argv=[])
    echoed = []
    log = run.logger("train", echo=echoed.append)
    log("epoch 1")
    run.logger("train")("epoch 2")
    lines = (run.logs / "train.log").read_text().splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == ["epoch 1", "epoch 2"] and echoed == ["epoch 1"]


def test_open_and_summary(home):
    with pytest.raises(ArtifactError, match="does not exist"):
        RunDir.open(home / "nope")
    (home / "plain").mkdir()
    with pytest.raises(ArtifactError, match="not a gear-trt run directory"):
        RunDir.open(home / "plain")
    run = RunDir.create(home / "run", "train", argv=[])
    run.write_summary({"pipeline": "train", "stages": []})
    assert RunDir.open(run.path).read_summary() == {"pipeline": "train", "stages": []}
    (run.path / "summary.json").write_text("{broken")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        run.read_summary()
    (run.path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ArtifactError, match="not a gear-trt manifest"):
        RunDir(run.path).manifest


def test_stage_entry_follows_the_summary_schema():
    import torch

    from gear_trt.models import build_model, count_params, scaled_spec

    spec = scaled_spec("resnet18", 0.1)
    entry = stage_entry("backbone", checkpoint="checkpoints/backbone.pt", spec=spec.to_dict(), kind="train",
                        epochs=3, seconds=1.5, clean_acc=0.4).to_dict()
    n = count_params(spec)
    # deployed sizes: BatchNorm folded into the conv before it (its 2 parameters per channel become one bias)
    bn_channels = sum(m.num_features for m in build_model(spec).modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert entry["params"] == n and entry["param_bytes"]["fp32"] == 4 * (n - bn_channels)
    assert entry["param_bytes"]["int8"] < entry["param_bytes"]["fp16"] < entry["param_bytes"]["fp32"]
    assert entry["widths"] == list(spec.widths) and entry["robust_acc"] is None and entry["energy_j"] is None
    assert {"name", "checkpoint", "clean_acc", "seconds", "epochs", "kind"} <= set(entry)


def test_rundir_does_not_import_torch(tmp_path):
    code = ("import sys; from gear_trt.pipeline import RunDir; "
            f"RunDir.create({str(tmp_path / 'r')!r}, 'x', argv=[]); print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert "torch" in environment()  # the version is still recorded, from package metadata


def test_one_rule_for_a_run_directory_and_every_path_from_rundir(home):
    from gear_trt.export.layout import source_checkpoints

    (home / "plain").mkdir()
    assert not RunDir.is_run_dir(home / "plain") and not RunDir.is_run_dir(home / "missing")
    for marker in ("manifest.json", "summary.json", "checkpoints"):
        d = home / f"with-{marker}"
        d.mkdir()
        (d / marker).mkdir() if marker == "checkpoints" else (d / marker).write_text("{}")
        assert RunDir.is_run_dir(d) and RunDir.open(d).path == d.resolve()
    run = RunDir.create(home / "run", "grow", argv=[])
    assert RunDir.is_run_dir(run.path)
    for stage in ("backbone", "grown"):
        run.checkpoint(stage).write_bytes(b"x")
        with run.manifest.run_stage(stage) as out:
            out["artifacts"].append(run.checkpoint(stage))
            out["entry"] = {"name": stage, "checkpoint": run.rel(run.checkpoint(stage))}
    # no summary.json yet: the order comes from the manifest; export puts files where RunDir says
    assert [(c.name, c.path, c.onnx_dir, c.engine_dir) for c in source_checkpoints(run.path)] == [
        (s, run.checkpoint(s), run.onnx_dir, run.engines_dir) for s in ("backbone", "grown")]
    assert run.eval_path("era", "int8") == run.path / "eval" / "era-int8.json" and run.bench_path == run.path / "bench.json"


def test_the_summary_is_a_view_of_the_manifest(home):
    run = RunDir.create(home / "run", "grow", argv=[])
    for stage, acc in (("backbone", 0.5), ("grown", 0.7)):
        with run.manifest.run_stage(stage) as out:
            out["entry"] = {"name": stage, "checkpoint": f"checkpoints/{stage}.pt", "clean_acc": acc, "augmented": False}
    with pytest.raises(RuntimeError):
        with run.manifest.run_stage("robust"):
            raise RuntimeError("killed")
    header = {"pipeline": "gearnn2", "arch": "vgg19", "seed": 0, "data": "builtin", "preset": "quick"}
    run.write_summary(run.current_summary(header))
    first = run.read_summary()
    assert [s["name"] for s in first["stages"]] == ["backbone", "grown"]  # the failed stage is not a result
    assert first["stages"][1]["clean_acc"] == 0.7 and first["stages"][1]["augmented"] is False and first["preset"] == "quick"
    run.summary_path.unlink()
    again = RunDir.create(run.path, "grow", resume=True, argv=[])
    assert again.current_summary(header).to_dict() == first  # rebuilt from the manifest alone


def test_records_write_the_old_shapes_and_read_any_version():
    from gear_trt.records import BenchRow, CorruptionEval, LatencyStats, RunSummary, StageEntry

    entry = {"name": "grow", "checkpoint": "checkpoints/grow.pt", "params": 1200, "param_bytes": {"fp32": 4800, "int8": 1200},
             "widths": [4, 8], "clean_acc": 0.61, "robust_acc": None, "seconds": 2.5, "energy_j": None, "epochs": 1,
             "kind": "grow", "augmented": False, "budget": "1,200 parameters"}
    assert StageEntry.from_dict(entry).to_dict() == entry  # extras written flat, as stage_entry always did
    summary = {"pipeline": "gearnn2", "arch": "vgg19", "seed": 0, "data": "builtin", "preset": "quick", "stages": [entry]}
    assert RunSummary.from_dict(summary).to_dict() == summary
    old = StageEntry.from_dict({"name": "x", "params": "many", "clean_acc": float("nan"), "widths": "8 8", "seconds": True})
    assert (old.params, old.clean_acc, old.widths, old.seconds) == (None, None, [], None)
    assert StageEntry.from_dict("junk") is None
    assert [s.name for s in RunSummary.from_dict({"stages": [{"name": "a"}, 3, None]}).stages] == ["a"]

    row = BenchRow("era", "int8", "onnxruntime", "onnx/era.int8.onnx", 1000, 0.8, 0.6,
                   LatencyStats(1, 10, 2, 0.5, 0.6, 0.7, 0.55, 0.4), None, None, details={"runner": {"threads": 1}})
    assert BenchRow.from_dict(row.to_dict()) == row
    bare = BenchRow.from_dict({"model": "m", "latency": {"p50_ms": 1.0}})
    assert bare.latency is not None and bare.latency.p50_ms == 1.0 and bare.size_bytes is None and bare.status == "ok"

    sweep = {"acc": {"fog": {"1": 0.5, "3": None}}, "clean_acc": 0.9}
    flat = CorruptionEval.from_dict({**sweep, "model": "era", "precision": "fp32", "backend": "torch"}, "era.json")
    nested = CorruptionEval.from_dict({"precision": "int8", "backend": "onnxruntime", "corruptions": {**sweep, "model": "x.onnx"}},
                                      "era-int8.json")
    assert (flat.model, flat.precision, flat.mean_corruption_acc) == ("era", "fp32", 0.5)
    assert (nested.model, nested.precision, nested.backend) == ("era", "int8", "onnxruntime")
    assert CorruptionEval.from_dict({"clean": 1}, "x.json") is None
