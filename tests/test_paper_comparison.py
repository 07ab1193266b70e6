"""The paper's study as a sweep: tools/paper_comparison.py's SPEC, and the tables/figures read from run directories."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gear_trt.rundir import MANIFEST_FORMAT
from gear_trt.sweep import plan_sweep, write_report
from gear_trt.sweep.report import final, fmt, mean_std, plot_sensitivity, sensitivity_row

TOOL = Path(__file__).resolve().parents[1] / "tools" / "paper_comparison.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("paper_comparison", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(energies):
    stages = [{"name": f"s{i}", "seconds": 10.0 * (i + 1), "energy_j": e, "params": 100 + i, "clean_acc": 0.1 * (i + 1),
               "robust_acc": 0.05 * (i + 1)} for i, e in enumerate(energies)]
    return {"stages": stages}


def test_final_model_costs_its_whole_run():
    f = final(_summary([1.0, 2.0, 3.5]))
    assert f == {"clean_acc": pytest.approx(0.3), "robust_acc": pytest.approx(0.15), "params": 102,
                 "seconds": pytest.approx(60.0), "energy_j": pytest.approx(6.5)}
    assert final(_summary([1.0, None]))["energy_j"] is None  # one unmetered stage: total unknown


def test_mean_std_and_formatting():
    mean, std = mean_std([0.30, 0.40, None, 0.35])
    assert mean == pytest.approx(0.35) and std == pytest.approx(0.05)
    assert mean_std([None]) == (None, None) and mean_std([2.0]) == (2.0, 0.0)
    assert fmt(mean, std, 100) == "35.00 ± 5.00" and fmt(None, None) == "n/a"


def test_sensitivity_rows_and_plot(tmp_path):
    runs = [{"seed": k, "clean_acc": 0.30 + 0.02 * k, "robust_acc": 0.25, "seconds": 60.0 + k, "params": 1000} for k in range(3)]
    row = sensitivity_row(0.6, runs)
    assert row["clean_acc"] == (pytest.approx(0.32), pytest.approx(0.02)) and row["robust_acc"] == (0.25, 0.0)
    assert row["seconds"][0] == pytest.approx(61.0) and row["params"][0] == 1000 and row["runs"] == runs
    rows = [sensitivity_row(g, runs) for g in (0.3, 0.6, 1.2)]
    out = tmp_path / "s.png"
    plot_sensitivity(rows, out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_the_study_is_one_sweep_spec(tool, tmp_path):
    spec = tool.paper_spec(data="builtin", seeds=(0, 1), sensitivity=(0.3, 0.9, 1.2))
    plan = plan_sweep(spec, tmp_path / "out")
    names = [t.name for t in plan.trials]
    # 4 methods x 2 seeds, and GEARnn-2 at 0.3 and 1.2 (its 0.9 runs are the comparison's, not run twice)
    assert len(names) == len(set(names)) == 8 + 4
    assert "pipeline=gearnn2,growth_ratio=0.9,seed=1" in names and "pipeline=gearnn2,growth_ratio=1.2,seed=0" in names
    by_name = {t.name: t for t in plan.trials}
    small = by_name["pipeline=small-aug,growth_ratio=0.9,seed=1"]
    assert small.after == "pipeline=gearnn2,growth_ratio=0.9,seed=1"  # it copies that run's size, so runs after it
    assert small.options["like"] == str(tmp_path / "out" / small.after)
    assert by_name["pipeline=gearnn1,growth_ratio=0.9,seed=0"].options["like"] is None
    assert small.options["train_per_class"] == 1000 and small.options["test_per_class"] == 500 and small.options["preset"] == "cpu"
    assert [len(p) for p in plan.phases()] == [8, 4]
    # resumed with seed 1's GEARnn-2 finished: its baselines start with the first phase, no core idles
    _fake_run(by_name[small.after], 0.5, 0.4, 10.0, 1000, [8])
    first, second = plan.phases()
    assert small in first and "pipeline=small-aug,growth_ratio=0.9,seed=0" in [t.name for t in second]
    assert [len(p) for p in plan.phases()] == [10, 2]


def _fake_run(trial, clean, robust, seconds, params, widths):
    """What run_pipeline leaves in a finished run directory (only the fields the report reads)."""
    trial.path.mkdir(parents=True)
    (trial.path / "config.json").write_text(json.dumps(trial.options))
    stages = [{"name": "final", "clean_acc": clean, "robust_acc": robust, "seconds": seconds, "energy_j": None,
               "params": params, "widths": widths}]
    (trial.path / "summary.json").write_text(json.dumps({"stages": stages, "total_seconds": seconds}))
    manifest = {"format": MANIFEST_FORMAT, "invocations": [{}], "stages": {"final": {"status": "done"}}}
    (trial.path / "manifest.json").write_text(json.dumps(manifest))


def test_comparison_and_sensitivity_come_from_the_run_directories(tool, tmp_path):
    plan = plan_sweep(tool.paper_spec(data="builtin", seeds=(0, 1), sensitivity=(0.3,)), tmp_path / "out")
    plan.out.mkdir()
    plan.save()
    for t in plan.trials:
        p, g, seed = t.options["pipeline"], t.options["growth_ratio"], t.options["seed"]
        time = {"gearnn2": 80.0, "gearnn1": 90.0, "small-clean": 100.0, "small-aug": 120.0}[p] * (g / 0.9 if p == "gearnn2" else 1) + seed
        _fake_run(t, clean=0.30 + 0.01 * seed + (0.05 if p == "small-aug" else 0), robust=0.25, seconds=time,
                  params=int(1000 * g) if p == "gearnn2" else 900, widths=[1, 2] if p != "gearnn1" else [2, 1])
    paths = write_report(plan)
    assert {p.name for p in paths} >= {"results.csv", "results.md", "comparison.md", "sensitivity.json", "sensitivity.png"}
    comp = json.loads((plan.out / "comparison.json").read_text())
    assert comp["grid_point"] == {"growth_ratio": 0.9} and comp["seeds"] == [0, 1] and comp["arch"] == "vgg19"
    assert list(comp["table"]) == ["gearnn2", "gearnn1", "small-clean", "small-aug"]
    assert comp["table"]["small-aug"]["clean_acc"] == [pytest.approx(0.355), pytest.approx(0.00707, abs=1e-5)]
    assert comp["table"]["gearnn2"]["seconds"][0] == pytest.approx(80.5)
    # Small(D_aug) / GEARnn-2 time, paired by seed: 120/80 and 121/81
    assert comp["ratios"]["time_small_aug_over_gearnn2"][0] == pytest.approx((120 / 80 + 121 / 81) / 2)
    assert [r["widths_equal_to_gearnn2"] for r in comp["table"]["small-clean"]["runs"]] == [True, True]
    assert [r["widths_equal_to_gearnn2"] for r in comp["table"]["gearnn1"]["runs"]] == [False, False]
    md = (plan.out / "comparison.md").read_text()
    assert "| Small(D_aug) | 900 | 35.50 ± 0.71 | 25.00 ± 0.00 | 120.5 ± 0.7 | n/a |" in md
    assert "Small(D_aug) / GEARnn-2 training time: 1.50 ± 0.00x" in md
    sens = json.loads((plan.out / "sensitivity.json").read_text())
    assert [r["growth_ratio"] for r in sens] == [0.3, 0.9] and [r["params"][0] for r in sens] == [300, 900]
    assert "| 0.3 | 300 | 30.50 ± 0.71 |" in md
    rows = (plan.out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("trial,pipeline,growth_ratio,seed,status,clean_acc") and len(rows) == 1 + 10

