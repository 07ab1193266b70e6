"""tools/paper_comparison.py's bookkeeping: a run's total cost, mean ± std over seeds, the sensitivity plot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

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


def test_final_model_costs_its_whole_run(tool):
    f = tool.final(_summary([1.0, 2.0, 3.5]))
    assert f == {"clean_acc": pytest.approx(0.3), "robust_acc": pytest.approx(0.15), "params": 102,
                 "seconds": pytest.approx(60.0), "energy_j": pytest.approx(6.5)}
    assert tool.final(_summary([1.0, None]))["energy_j"] is None  # one unmetered stage: total unknown


def test_mean_std_and_formatting(tool):
    mean, std = tool.mean_std([0.30, 0.40, None, 0.35])
    assert mean == pytest.approx(0.35) and std == pytest.approx(0.05)
    assert tool.mean_std([None]) == (None, None) and tool.mean_std([2.0]) == (2.0, 0.0)
    assert tool.fmt(mean, std, 100) == "35.00 ± 5.00" and tool.fmt(None, None) == "n/a"


def test_sensitivity_rows_and_plot(tool, tmp_path):
    runs = [{"seed": k, "clean_acc": 0.30 + 0.02 * k, "robust_acc": 0.25, "seconds": 60.0 + k, "params": 1000} for k in range(3)]
    row = tool.sensitivity_row(0.6, runs)
    assert row["clean_acc"] == (pytest.approx(0.32), pytest.approx(0.02)) and row["robust_acc"] == (0.25, 0.0)
    assert row["seconds"][0] == pytest.approx(61.0) and row["params"][0] == 1000 and row["runs"] == runs
    rows = [tool.sensitivity_row(g, runs) for g in (0.3, 0.6, 1.2)]
    out = tmp_path / "s.png"
    tool.plot_sensitivity(rows, out)
    assert out.read_bytes().startswith(b"\x89PNG")
