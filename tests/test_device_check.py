"""tools/device_check.py without a GPU: its --dry-run runs every step tiny on the CPU and writes the
schema the GPU run writes; a step that overruns or fails is recorded and the others still run;
--pack-data makes the same subset twice; bad options are one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "device_check.py"
STEPS = ["environment", "gpu_tests", "parity_era", "parity_corruptions", "parity_amp_training", "throughput_growth",
         "paper_gearnn2", "paper_small_aug"]


def run_tool(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the tool must find the package from its own tree, as on the lent machine
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT.parent)


def load_tool():
    spec = importlib.util.spec_from_file_location("device_check", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("device_check", module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check")
    proc = run_tool("--dry-run", "--out", str(out))
    return proc, out, json.loads((out / "device_check.json").read_text())


def test_dry_run_runs_every_step_and_writes_the_schema(dry):
    proc, out, report = dry
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["schema"] == "gear-trt-device-check/1" and report["dry_run"] is True
    assert list(report["steps"]) == STEPS == [s.name for s in load_tool().STEPS]
    for name, step in report["steps"].items():
        assert set(step) >= {"status", "seconds", "limit_s", "result", "error"}, name
        assert step["status"] == "ok" and step["error"] is None and 0 < step["seconds"] <= step["limit_s"], (name, step.get("error"))
    assert report["checks_failed"] == [] and report["seconds"] < report["budget_s"]
    assert report["tolerances"]["era_mean_abs"] == 1e-4
    env = report["steps"]["environment"]["result"]
    assert env["device"] == "cpu" and env["packages"]["torch"] and env["python"].startswith("3.")
    assert (out / "device_check.md").read_text().startswith("# gear-trt device check (dry run on the CPU)")
    assert (out / "gpu-tests.xml").is_file()


def test_dry_run_results_hold_real_numbers(dry):
    _, out, report = dry
    r = {name: step["result"] for name, step in report["steps"].items()}
    assert r["gpu_tests"]["counts"]["skipped"] >= 1 and r["gpu_tests"]["pass"]  # no GPU: the gpu tests skip
    assert r["parity_era"]["mean_abs"] == [0.0, 0.0, 0.0]  # CPU against itself in a dry run
    amp = {row["amp"]: row for row in r["parity_amp_training"]["runs"]}
    assert set(amp) == {"off", "fp16", "bf16"} and amp["fp16"]["scaler"]["scale"] <= 65536
    assert 0 < amp["bf16"]["first_loss_rel_diff"] < amp["bf16"]["tolerance_first_loss_rel"]
    assert r["parity_amp_training"]["resume_on_device"]["bit_identical"] is True  # on the CPU resume is exact
    vgg = r["throughput_growth"]["families"]["vgg19"]
    assert vgg["grown_params"] > vgg["backbone_params"] > 0
    assert all(vgg["growth"][g]["seconds"] > 0 and vgg["growth"][g]["over_backbone_fp32_step"] > 0 for g in ("gradmax", "firefly"))
    assert all(vgg[k][mode]["images_per_s"] > 0 for k in ("backbone", "grown") for mode in ("fp32", "amp_fp16_channels_last"))
    g2, small = r["paper_gearnn2"], r["paper_small_aug"]
    assert [s["name"] for s in g2["stages"]] == ["backbone", "grow", "grown", "robust"]
    assert small["final_params"] == g2["final_params"] and small["time_over_gearnn2"] > 0
    md = (out / "device_check.md").read_text()
    assert "| parity_amp_training | ok |" in md and "| vgg19 | 285,068 -> " in md and "GEARnn-2 vs Small(D_aug)" in md


def test_an_overrunning_and_a_failing_step_are_recorded_and_the_rest_still_runs(tmp_path):
    proc = run_tool("--dry-run", "--out", str(tmp_path), "--only", "parity_era,paper_small_aug,parity_corruptions",
                    "--limit", "parity_era=0.01")
    report = json.loads((tmp_path / "device_check.json").read_text())
    steps = report["steps"]
    assert proc.returncode == 1 and list(steps) == ["parity_era", "parity_corruptions", "paper_small_aug"]
    assert steps["parity_era"]["status"] == "timeout" and "time box" in steps["parity_era"]["error"]
    assert steps["paper_small_aug"]["status"] == "failed" and "GEARnn-2 did not finish" in steps["paper_small_aug"]["error"]
    assert steps["parity_corruptions"]["status"] == "ok" and steps["parity_corruptions"]["result"]["pass"]
    assert report["checks_failed"] == ["parity_era: timeout", "paper_small_aug: failed"]
    assert "| paper_small_aug | failed |" in (tmp_path / "device_check.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--dry-run"], "--out is required"),
    (["--dry-run", "--out", "x", "--only", "parity"], "unknown step 'parity'"),
    (["--dry-run", "--out", "x", "--limit", "gpu_tests=soon"], "is not STEP=SECONDS"),
    (["--out", "x", "--data", "/nonexistent.zip"], "does not exist"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    proc = run_tool(*[str(tmp_path / a) if a == "x" else a for a in args], timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_pack_data_is_class_balanced_and_reproducible(tmp_path):
    source = tmp_path / "full.zip"
    with zipfile.ZipFile(source, "w") as z:
        for split, n in (("train", 5), ("test", 3)):
            for cls in ("cat", "dog"):
                z.writestr(f"{split}/{cls}/", b"")
                for i in range(n):
                    z.writestr(f"{split}/{cls}/{i:04d}.jpg", f"{split}-{cls}-{i}".encode())
    tool = load_tool()
    first = tool.pack_data(tmp_path / "a", source, train_per_class=2, test_per_class=1)
    second = tool.pack_data(tmp_path / "b", source, train_per_class=2, test_per_class=1)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as z:
        assert sorted(z.namelist()) == ["test/cat/0000.jpg", "test/dog/0000.jpg", "train/cat/0000.jpg", "train/cat/0001.jpg",
                                        "train/dog/0000.jpg", "train/dog/0001.jpg"]
        assert z.read("train/dog/0001.jpg") == b"train-dog-1"
