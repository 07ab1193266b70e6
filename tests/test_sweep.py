"""`gear-trt sweep`: a SPEC checked against grow's options, trials as run directories, a killed Ray sweep resumed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gear_trt.cli.main import main
from gear_trt.io import sha256_file
from gear_trt.sweep import Plan, plan_sweep, run_sweep
from gear_trt.sweep.report import ATTEMPT

REPO = Path(__file__).resolve().parents[1]
TINY = {"train_per_class": 12, "test_per_class": 4, "batch_size": 30, "epochs_scale": 0.25, "robust_eval": "none"}


def _write(tmp_path: Path, spec: dict, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}  # no network in tests


@pytest.mark.parametrize("spec, message", [
    ({"growth-ratio": 0.3}, "SPEC key 'growth-ratio' is not a gear-trt grow option -- fix: did you mean 'growth_ratio'?"),
    ({"seed": [0, "x"]}, "SPEC seed: invalid int value: 'x'"),
    ({"arch": "vgg"}, "SPEC: unknown --arch 'vgg' -- fix: choose one of vgg19, mobilenet_v1, resnet18"),
    ({"jsd": "yes"}, "SPEC jsd: 'yes' is not true or false"),
    ({"grower": ["firefly", "firefy"]}, "SPEC (grower=firefy): unknown grower 'firefy' -- fix: choose one of firefly, gradmax, random"),
    ({"seed": []}, "SPEC seed: an empty list gives no trials"),
    ({"seed": [0, 1], "budget": "250k", "growth_ratio": 0.5}, "SPEC (seed=0): --budget and --growth-ratio both set the final size"),
    ({"budget": "3 bananas"}, "budget '3 bananas' has a byte unit but no precision"),
    ({"out": "runs/x"}, "SPEC key 'out' is not for a sweep"),
    ({"pipeline": ["small-aug"], "like": "gearnn2"}, "copies the size of the gearnn2 trial of its grid point, which the SPEC does not run"),
    ({"resources_per_trial": {"cpu": 0}}, "SPEC resources_per_trial: {\"cpu\": 0} is not a mapping of resource amounts"),
    ({"data": "no/such.zip"}, "data source"),
    ({"deploy_cost": "yes"}, "SPEC deploy_cost: \"yes\" is not true or false"),
    ({"grids": [{"seed": 0, "deploy_cost": True}]}, "SPEC key 'deploy_cost' belongs at the top level, not inside a grid"),
])
def test_a_bad_spec_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, spec, message):
    out = tmp_path / "sweep"
    assert main(["sweep", str(_write(tmp_path, spec)), "--out", str(out), "--sequential"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("gear-trt sweep: error: ") and message in err and " -- fix: " in err
    assert not out.exists()


def test_every_grow_option_is_a_spec_key(tmp_path):
    import dataclasses

    from gear_trt.pipeline.stages import GrowOptions

    defaults = dataclasses.asdict(GrowOptions())
    plan = plan_sweep({k: v for k, v in defaults.items() if v is not None}, tmp_path / "out")
    assert [t.name for t in plan.trials] == ["run"] and plan.trials[0].options == defaults
    assert plan.trials[0].argv() == ["--out", str(tmp_path / "out" / "run")]  # grow's defaults are GrowOptions'


def test_yaml_spec_grids_and_trial_names(tmp_path):
    pytest.importorskip("yaml")
    from gear_trt.sweep import load_spec

    spec = load_spec(_yaml(tmp_path))
    plan = plan_sweep(spec, tmp_path / "out")
    names = [t.name for t in plan.trials]
    # seed x pipeline, plus gearnn2 at a second ratio; the 0.5 point is shared, not run twice
    assert names == ["pipeline=gearnn2,growth_ratio=0.5,seed=0", "pipeline=small-aug,growth_ratio=0.5,seed=0",
                     "pipeline=gearnn2,growth_ratio=0.5,seed=1", "pipeline=small-aug,growth_ratio=0.5,seed=1",
                     "pipeline=gearnn2,growth_ratio=1.0,seed=0", "pipeline=gearnn2,growth_ratio=1.0,seed=1"]
    t = plan.trials[1]
    assert t.after == names[0] and t.options["like"] == str(tmp_path / "out" / names[0]) and t.options["growth_pass"] == 0.5
    assert t.axes == {"pipeline": "small-aug", "growth_ratio": 0.5, "seed": 0} and plan.resources == {"cpu": 2.0}
    assert t.argv()[:2] == ["--pipeline=small-aug", "--growth-ratio=0.5"] and t.argv()[-2:] == ["--out", str(t.path)]


def _yaml(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text("seed: [0, 1]\ngrowth_pass: 0.5\nresources_per_trial: {cpu: 2}\n"
                    "grids:\n  - {pipeline: [gearnn2, small-aug], growth_ratio: [0.5], like: gearnn2}\n"
                    "  - {pipeline: gearnn2, growth_ratio: [0.5, 1.0]}\n")
    return path


def test_a_resumed_sweep_refuses_a_changed_spec(tmp_path):
    plan = plan_sweep({"seed": [0], **TINY}, tmp_path / "out")
    plan.out.mkdir()
    plan.save()
    plan.trials[0].path.mkdir()
    (plan.trials[0].path / "config.json").write_text(json.dumps({**plan.trials[0].options, "lr": 0.5}))
    with pytest.raises(Exception, match=r"was run with other options \(lr: 0.5 -> 0.1\)"):
        plan_sweep({"seed": [0], **TINY}, tmp_path / "out")
    # a run made before an option existed had its default: still this sweep's run
    older = {k: v for k, v in plan.trials[0].options.items() if k != "post_growth_lr"}
    (plan.trials[0].path / "config.json").write_text(json.dumps(older))
    assert plan_sweep({"seed": [0], **TINY}, tmp_path / "out").trials[0].options["post_growth_lr"] == 1.0
    with pytest.raises(Exception, match=r"was run with other options \(post_growth_lr: 1.0 -> 0.5\)"):
        plan_sweep({"seed": [0], "post_growth_lr": 0.5, **TINY}, tmp_path / "out")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(Exception, match="exists and is not a sweep directory"):
        plan_sweep({"seed": [0], **TINY}, tmp_path / "other")


def test_help_imports_neither_torch_nor_ray():
    for argv in (["--help"], ["sweep", "--help"]):
        code = ("import sys\nfrom gear_trt.cli.main import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                "print('HEAVY', sorted(m for m in ('torch', 'ray', 'numpy') if m in sys.modules))" % argv)
        out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip().endswith("HEAVY []"), out.stderr
        assert "sweep" in out.stdout


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path):
    spec = _write(tmp_path, {"seed": [0, 1], **TINY})
    code = ("import sys\nsys.modules['ray'] = None  # as if Ray were not installed\nfrom gear_trt.cli.main import main\n"
            f"sys.exit(main(['sweep', {str(spec)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    error = [ln for ln in out.stderr.splitlines() if "error" in ln]
    assert len(error) == 1 and "pip install 'gear-trt[sweep]'" in error[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def copied_sweep(tmp_path_factory):
    """A tiny sequential sweep whose baseline copies gearnn2's size, with `deploy_cost: true`, run twice: the
    second time after the baseline's deploy record was lost (as if killed between training and measuring).
    Returns what each invocation printed and what was on disk before the second."""
    tmp = tmp_path_factory.mktemp("copied")
    spec = _write(tmp, {"pipeline": ["small-aug", "gearnn2"], "like": "gearnn2", "growth_ratio": 0.3, "deploy_cost": True, **TINY})
    out = tmp / "out"

    def sweep() -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert main(["sweep", str(spec), "--out", str(out), "--sequential"]) == 0
        return err.getvalue()

    first = sweep()
    runs = {p: out / f"pipeline={p}" for p in ("gearnn2", "small-aug")}
    files = {p: {"int8": run / "onnx" / f"{_final_stage(run)}.int8.onnx", "record": run / "deploy_cost.json", "summary": run / "summary.json"}
             for p, run in runs.items()}
    before = {p: {k: (f.stat().st_mtime_ns, f.read_bytes()) for k, f in fs.items()} for p, fs in files.items()}
    results = json.loads((out / "results.json").read_text())
    files["small-aug"]["record"].unlink()
    second = sweep()
    return {"out": out, "first": first, "second": second, "runs": runs, "files": files, "before": before, "results": results}


def _final_stage(run: Path) -> str:
    return json.loads((run / "summary.json").read_text())["stages"][-1]["name"]


def test_sequential_sweep_runs_baselines_after_the_run_they_copy(copied_sweep):
    err, out = copied_sweep["first"], copied_sweep["out"]
    # the baseline is listed first but copies gearnn2's final size, so gearnn2 runs first
    assert err.index("started  pipeline=gearnn2") < err.index("started  pipeline=small-aug")
    assert "[2/2] done  pipeline=small-aug: clean" in err
    g2 = json.loads((out / "pipeline=gearnn2" / "summary.json").read_text())
    small = json.loads((out / "pipeline=small-aug" / "summary.json").read_text())
    assert small["stages"][0]["widths"] == g2["stages"][-1]["widths"]
    results = json.loads((out / "results.json").read_text())
    assert [(t["name"], t["status"], t["invocations"]) for t in results["trials"]] == [
        ("pipeline=small-aug", "done", 1), ("pipeline=gearnn2", "done", 1)]
    assert results["comparison"]["table"]["small-aug"]["runs"][0]["widths_equal_to_gearnn2"] is True
    # the same command again: nothing to train
    assert copied_sweep["second"].count("finished already, reused") == 2
    assert json.loads((out / "pipeline=gearnn2" / "manifest.json").read_text())["invocations"][0]["command"] == "grow"


def test_deploy_cost_puts_int8_size_and_latency_in_the_comparison(copied_sweep):
    out, files, results = copied_sweep["out"], copied_sweep["files"], copied_sweep["results"]
    by_name = {t["name"]: t for t in results["trials"]}
    for p, run in copied_sweep["runs"].items():
        int8, stage = files[p]["int8"], _final_stage(run)
        # the final model only, exported by `gear-trt export`'s code: fp32, then int8 Q/DQ from it
        assert sorted(f.name for f in (run / "onnx").glob("*.onnx")) == [f"{stage}.fp32.onnx", f"{stage}.int8.onnx"]
        assert int8.stat().st_size < 0.5 * (run / "onnx" / f"{stage}.fp32.onnx").stat().st_size
        trial = by_name[f"pipeline={p}"]
        assert trial["int8_bytes"] == int8.stat().st_size and trial["ort_latency_ms"] > 0
        # not a stage: the training time is the summary's stages alone
        summary = json.loads(files[p]["summary"].read_text())
        assert [s["name"] for s in summary["stages"]][-1] == stage
        assert trial["seconds"] == pytest.approx(sum(s["seconds"] for s in summary["stages"]))
        table = results["comparison"]["table"][p]
        assert table["int8_bytes"] == [trial["int8_bytes"], 0.0] and table["ort_latency_ms"] == [trial["ort_latency_ms"], 0.0]
        assert f"deploy cost  pipeline={p}: int8 {trial['int8_bytes'] / 1000:.1f} KB, onnxruntime p50" in copied_sweep["first"]
    md = (out / "comparison.md").read_text()
    assert "| int8 size KB | ORT latency ms (batch 1, 1 thread) |" in md
    g2 = by_name["pipeline=gearnn2"]
    assert f"| {g2['int8_bytes'] / 1000:.1f} ± 0.0 | {g2['ort_latency_ms']:.3f} ± 0.000 |" in md
    assert "int8_bytes" in (out / "results.csv").read_text().splitlines()[0]


def test_deploy_cost_is_measured_once_and_resumed_where_missing(copied_sweep):
    files, before, second = copied_sweep["files"], copied_sweep["before"], copied_sweep["second"]
    # gearnn2 was measured already: nothing exported, timed or written again
    assert "deploy cost  pipeline=gearnn2: measured already, reused" in second
    for key in ("int8", "record", "summary"):
        assert (files["gearnn2"][key].stat().st_mtime_ns, files["gearnn2"][key].read_bytes()) == before["gearnn2"][key]
    # the baseline's lost record is measured again; its int8 file is up to date, so it is timed, not re-exported
    assert "deploy cost  pipeline=small-aug: int8" in second
    assert files["small-aug"]["record"].is_file()
    assert files["small-aug"]["int8"].stat().st_mtime_ns == before["small-aug"]["int8"][0]
    assert files["small-aug"]["summary"].read_bytes() == before["small-aug"]["summary"][1]
    trials = {t["name"]: t for t in json.loads((copied_sweep["out"] / "results.json").read_text())["trials"]}
    assert trials["pipeline=small-aug"]["int8_bytes"] == files["small-aug"]["int8"].stat().st_size
    assert trials["pipeline=small-aug"]["invocations"] == 1  # not retrained


def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path, capsys):
    grids = [{"pipeline": "gearnn2", "budget": "1k"}, {"pipeline": "small-clean", "growth_ratio": 0.3}]  # 1k: below the backbone
    plan = plan_sweep({**TINY, "grids": grids}, tmp_path / "out")
    assert run_sweep(plan, sequential=True) == {plan.trials[0].name: "failed"}
    err = capsys.readouterr().err
    assert f"FAILED  {plan.trials[0].name}: budget 1,000 parameters is below the backbone" in err
    assert f"[1/2] done  {plan.trials[1].name}" in err
    rows = (plan.out / "results.csv").read_text().splitlines()
    assert ",failed," in rows[1] and ",done," in rows[2]
    # no deploy_cost in the SPEC: no deployment step, nothing measured
    done = plan.trials[1].path
    assert not plan.deploy_cost and "deploy cost" not in err
    assert not (done / "onnx").exists() and not (done / "deploy_cost.json").exists()
    trial = json.loads((plan.out / "results.json").read_text())["trials"][1]
    assert trial["status"] == "done" and trial["int8_bytes"] is None and trial["ort_latency_ms"] is None


def _proc_group_alive(pgid: int) -> bool:
    """Any live (not zombie) process left in process group `pgid` (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to see the killed sweep's processes")
def test_a_killed_ray_sweep_resumes_without_retraining_finished_trials(tmp_path):
    pytest.importorskip("ray.tune", reason="Ray Tune is the optional extra gear-trt[sweep]")
    # two trials at once on local Ray (one CPU each): a quick baseline, and a longer GEARnn-2 that is killed mid-way
    spec = _write(tmp_path, {"growth_ratio": 0.3, "test_per_class": 4, "batch_size": 30, "robust_eval": "none",
                             "resources_per_trial": {"cpu": 1},
                             "grids": [{"pipeline": "small-clean", "train_per_class": 12, "epochs_scale": 0.25},
                                       {"pipeline": "gearnn2", "train_per_class": 40, "epochs_scale": 2}]})
    out = tmp_path / "out"
    quick, slow = out / "pipeline=small-clean,train_per_class=12,epochs_scale=0.25", out / "pipeline=gearnn2,train_per_class=40,epochs_scale=2.0"
    cmd = [sys.executable, "-m", "gear_trt", "sweep", str(spec), "--out", str(out)]
    groups = []
    try:
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        groups.append(first.pid)
        plan, ready, deadline = None, False, time.time() + 240
        while not ready and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
            plan = plan or (Plan.load(out) if (out / "sweep.json").exists() else None)
            manifest = json.loads((slow / "manifest.json").read_text()) if (slow / "manifest.json").exists() else {}
            ready = bool(plan and plan.trials[0].finished() and manifest.get("stages", {}).get("backbone", {}).get("status") == "done")
        assert ready and first.poll() is None, "not one trial done and the other mid-way: " + (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)  # the driver, local Ray and its trial workers at once, like a lost machine
        first.wait()
        deadline = time.time() + 30
        while _proc_group_alive(first.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _proc_group_alive(first.pid)
        assert not slow.joinpath("summary.json").exists() or "total_seconds" not in json.loads(slow.joinpath("summary.json").read_text())
        quick_ckpt, backbone_ckpt = sha256_file(quick / "checkpoints" / "small.pt"), sha256_file(slow / "checkpoints" / "backbone.pt")
        assert "[1/2] done  pipeline=small-clean" in (tmp_path / "first.log").read_text()

        second = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        groups.append(second.pid)
        output, _ = second.communicate(timeout=240)
        assert second.returncode == 0, output[-3000:]
    finally:
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert f"{quick.name}: finished already, reused" in output and f"[2/2] done  {slow.name}" in output
    results = {t["name"]: t for t in json.loads((out / "results.json").read_text())["trials"]}
    assert [t["status"] for t in results.values()] == ["done", "done"]
    # the finished trial was not run again: one invocation, one attempt, the same checkpoint
    assert results[quick.name]["invocations"] == 1 and sha256_file(quick / "checkpoints" / "small.pt") == quick_ckpt
    assert (quick / "logs" / "trial.log").read_text().count(ATTEMPT) == 1
    # the killed one continued: its backbone kept, the rest trained, ending like any run
    assert results[slow.name]["invocations"] == 2 and sha256_file(slow / "checkpoints" / "backbone.pt") == backbone_ckpt
    log = (slow / "logs" / "trial.log").read_text()
    assert log.count(ATTEMPT) == 2 and "backbone: done already, skipping" in log
    assert "torch threads 1" in log  # a 1-CPU trial trains with one thread
    summary = json.loads((slow / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["backbone", "grow", "grown", "robust"]
    csv_rows = (out / "results.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and all(",done," in r for r in csv_rows[1:])


def _record(pipeline: str, seed: int, int8_bytes=None, latency_ms=None) -> dict:
    """A finished trial as report.records() gives it."""
    return {"name": f"pipeline={pipeline},seed={seed}", "axes": {"pipeline": pipeline, "seed": seed}, "status": "done",
            "options": {"pipeline": pipeline, "seed": seed, "arch": "vgg19"}, "clean_acc": 0.5, "robust_acc": 0.4, "seconds": 10.0,
            "energy_j": None, "params": 1000, "widths": [1], "int8_bytes": int8_bytes, "ort_latency_ms": latency_ms}


def test_deployment_columns_are_mean_std_over_seeds_and_na_when_not_measured():
    from gear_trt.sweep.report import comparison, comparison_markdown

    comp = comparison([_record("gearnn2", 0, 1000, 1.0), _record("gearnn2", 1, 3000, 2.0), _record("small-aug", 0), _record("small-aug", 1)])
    assert comp["table"]["gearnn2"]["int8_bytes"] == (2000.0, pytest.approx(1414.21, abs=0.01))
    assert comp["table"]["gearnn2"]["ort_latency_ms"] == (1.5, pytest.approx(0.7071, abs=1e-4))
    assert comp["table"]["small-aug"]["int8_bytes"] == (None, None)
    assert [r["int8_bytes"] for r in comp["table"]["gearnn2"]["runs"]] == [1000, 3000]
    md = comparison_markdown(comp).splitlines()
    assert md[2].endswith("| energy J | int8 size KB | ORT latency ms (batch 1, 1 thread) |")
    assert md[4] == "| GEARnn-2 | 1,000 | 50.00 ± 0.00 | 40.00 ± 0.00 | 10.0 ± 0.0 | n/a | 2.0 ± 1.4 | 1.500 ± 0.707 |"
    assert md[5] == "| Small(D_aug) | 1,000 | 50.00 ± 0.00 | 40.00 ± 0.00 | 10.0 ± 0.0 | n/a | n/a | n/a |"
    # a comparison.json written before the deployment columns existed still renders
    old = json.loads(json.dumps(comp))
    for row in old["table"].values():
        del row["int8_bytes"], row["ort_latency_ms"]
    assert comparison_markdown(old).splitlines()[4].endswith("| 10.0 ± 0.0 | n/a | n/a | n/a |")


def test_the_paper_study_measures_deploy_cost_and_a_generic_sweep_does_not(tmp_path):
    import importlib.util

    loader = importlib.util.spec_from_file_location("paper_comparison", REPO / "tools" / "paper_comparison.py")
    tool = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(tool)
    plan = plan_sweep(tool.paper_spec(data="builtin", seeds=(0,)), tmp_path / "paper")
    assert plan.deploy_cost is True
    plan.out.mkdir()
    plan.save()
    assert Plan.load(plan.out).deploy_cost is True  # a resumed sweep keeps it
    assert plan_sweep({"seed": [0, 1]}, tmp_path / "generic").deploy_cost is False
