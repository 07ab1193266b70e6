"""`gear-trt report`: every section present in HTML and Markdown, table numbers equal to the run's JSON,
optional inputs skipped with a note, bad run directories rejected with a GearError."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gear_trt.cli.main import main as cli_main
from gear_trt.errors import ArtifactError, GearError
from gear_trt.evaluate.latency import LatencyStats
from gear_trt.evaluate.table import BenchRow
from gear_trt.report import SECTION_TITLES, build_report
from gear_trt.report.build import compared_entry, growth_series, load_run, stage_points

CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
               "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"]


def _stage(name: str, kind: str, params: int, widths: list[int], clean: float, robust: float | None, seconds: float,
           energy: float | None, epochs: int) -> dict[str, Any]:
    return {"name": name, "checkpoint": f"checkpoints/{name}.pt", "params": params,
            "param_bytes": {"fp32": 4 * params, "fp16": 2 * params, "int8": params}, "widths": widths,
            "clean_acc": clean, "robust_acc": robust, "seconds": seconds, "energy_j": energy, "epochs": epochs, "kind": kind}


def _eval(model: str, precision: str, backend: str, clean: float, drop: float) -> dict[str, Any]:
    """Accuracy falling with severity and varying by corruption, so every cell differs."""
    acc = {c: {str(s): round(clean - drop * s - 0.01 * i, 4) for s in range(1, 6)} for i, c in enumerate(CORRUPTIONS)}
    vals = [v for t in acc.values() for v in t.values()]
    return {"model": model, "precision": precision, "backend": backend, "clean_acc": clean,
            "mean_corruption_acc": sum(vals) / len(vals), "acc": acc,
            "extras": {"speckle_noise": {str(s): clean - 0.05 * s for s in range(1, 6)}}}


def _with_curve(stage: dict[str, Any], epochs: int = 4) -> dict[str, Any]:
    """A training stage as the pipeline records it with --curve-images: per epoch, its training seconds so far
    and the probe's accuracies, ending at the stage's own figures."""
    n = epochs
    stage["curve"] = [{"epoch": k, "seconds": stage["seconds"] * k / n, "clean_acc": stage["clean_acc"] * (0.7 + 0.3 * k / n),
                       "robust_probe_acc": (stage["robust_acc"] or 0.5) * (0.7 + 0.3 * k / n)} for k in range(1, n + 1)]
    return stage


def make_run(root: Path, *, growth: bool = True, evals: bool = True, bench: bool = True, energy: bool = True,
             curves: bool = True) -> Path:
    run = root / "run-vgg19"
    run.mkdir(parents=True)
    e = (lambda j: j) if energy else (lambda j: None)
    stages = [
        _stage("backbone", "train", 281_000, [16, 16, 32, 32, 64, 64, 64, 64], 0.7123, 0.5511, 410.5, e(4100.25), 40),
        _stage("grow", "grow", 1_290_000, [40, 24, 80, 56, 150, 96, 128, 110], 0.7034, None, 12.25, e(120.5), 1),
        _stage("grown", "train", 1_290_000, [40, 24, 80, 56, 150, 96, 128, 110], 0.8656, 0.6902, 900.0, e(9050.0), 40),
        _stage("era", "era", 1_290_000, [40, 24, 80, 56, 150, 96, 128, 110], 0.8571, 0.7744, 1010.0, e(10105.5), 40),
        _stage("small-din", "baseline", 1_300_000, [48, 48, 96, 96, 112, 112, 112, 112], 0.8702, 0.6633, 3650.0, e(36600.0), 160),
        _stage("small-daug", "baseline", 1_300_000, [48, 48, 96, 96, 112, 112, 112, 112], 0.8610, 0.7801, 4100.0, e(41000.0), 160),
    ]
    if curves:
        for st in stages[:4]:
            if st["kind"] != "grow":
                _with_curve(st)
    (run / "summary.json").write_text(json.dumps({"pipeline": "gearnn2", "arch": "vgg19", "seed": 0, "data": "builtin",
                                                  "stages": stages}))
    (run / "manifest.json").write_text(json.dumps({
        "energy_meter": {"kind": "ina3221", "source": "ina3221 (hwmon sysfs): rail VDD_IN (module total input)"},
        "environment": {"python": "3.11.9", "torch": "2.14.1", "tensorrt": None}}))
    if growth:
        (run / "growth.json").write_text(json.dumps({
            "group_names": [f"conv{i}" for i in range(1, 9)], "widths_before": [16, 16, 32, 32, 64, 64, 64, 64],
            "widths_after": [40, 24, 80, 56, 150, 96, 128, 110], "ratio": 0.9, "scores": {"conv1": [0.1, 0.2]}}))
    if evals:
        (run / "eval").mkdir()
        for stage, clean in (("backbone", 0.7123), ("era", 0.8571)):
            (run / "eval" / f"{stage}.json").write_text(json.dumps(_eval(stage, "fp32", "torch", clean, 0.04)))
        # as `gear-trt eval MODEL --corruptions ... --json RUN/eval/era-int8.json` writes it: the sweep nested
        sweep = {**_eval("era", "int8", "onnxruntime", 0.8502, 0.045), "model": "onnx/era.int8.onnx"}
        (run / "eval" / "era-int8.json").write_text(json.dumps({
            "path": "onnx/era.int8.onnx", "backend": "onnxruntime", "precision": "int8", "images": 1000,
            "clean": {"accuracy": 0.85, "correct": 850, "total": 1000}, "corruptions": sweep}))
    if bench:
        rows = []  # built with the bench's own row type, so the report reads what `gear-trt bench --json` writes
        for model, clean, robust in (("grown", 0.8656, 0.6902), ("era", 0.8571, 0.7744)):
            for k, (backend, prec, size) in enumerate((("onnxruntime", "fp32", 5_160_000), ("onnxruntime", "int8", 1_340_000),
                                                       ("tensorrt", "fp16", 2_700_000))):
                latency = LatencyStats(1, 200, 20, 0.512 + 0.1 * k, 0.601 + 0.1 * k, 0.9 + 0.1 * k, 0.55 + 0.1 * k, 0.5)
                throughput = LatencyStats(64, 20, 2, 30.0, 31.0, 32.0, 32.768 + k, 29.0)
                rows.append(BenchRow(model, prec, backend, f"onnx/{model}.{prec}.onnx", size, clean - 0.002 * k, robust - 0.003 * k,
                                     latency, throughput, None if backend == "onnxruntime" else 0.00125).to_dict())
        rows.append({"model": "backbone", "backend": "tensorrt", "precision": "fp32"})  # everything else missing
        (run / "bench.json").write_text(json.dumps({"format": "gear-trt-bench/1", "rows": rows}))
    return run


# --------------------------------------------------------------------------- Markdown parsing helpers


def md_sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def md_tables(section: str) -> list[list[dict[str, str]]]:
    """Every pipe table in a section, as rows of {header: cell}."""
    tables, lines = [], section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:|]+\|$", lines[i + 1]):
            headers = [h.strip() for h in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip().strip("|"))]
                assert len(cells) == len(headers), lines[i]
                rows.append(dict(zip(headers, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def num(cell: str) -> float:
    return float(cell.replace(",", ""))


def pct(value: float) -> float:
    return round(100 * value, 2)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    run = make_run(tmp_path_factory.mktemp("full"))
    html_path, md_path = build_report(run)
    return run, html_path.read_text(), md_path.read_text()


# --------------------------------------------------------------------------- tests


def test_every_section_in_html_and_markdown(full_report: tuple[Path, str, str]) -> None:
    run, html, md = full_report
    assert list(md_sections(md)) == list(SECTION_TITLES)
    for title in SECTION_TITLES:
        assert re.search(rf"<h2>{re.escape(title)}</h2>", html)
    assert "Not available" not in md
    # self-contained: figures inline, no external references
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 1 + 1 + 3 + 1 + 1  # trade-offs, curves, 3 heatmaps, widths, deploy
    assert not re.search(r'src="(?!data:)', html) and "<link" not in html
    png = base64.b64decode(re.search(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', html).group(1))
    assert png.startswith(b"\x89PNG")
    # Markdown links the same figures, written beside it
    links = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+\.png)\)", md)
    assert len(links) == 7 and all((run / "report" / link).is_file() for link in links)


def test_stage_table_matches_summary(full_report: tuple[Path, str, str]) -> None:
    run, _, md = full_report
    summary = json.loads((run / "summary.json").read_text())
    (table,) = md_tables(md_sections(md)["Stages"])
    assert [r["stage"] for r in table] == [s["name"] for s in summary["stages"]]
    for row, st in zip(table, summary["stages"]):
        assert row["kind"] == st["kind"]
        assert num(row["params"]) == st["params"] and num(row["epochs"]) == st["epochs"]
        assert num(row["size fp32 (MB)"]) == pytest.approx(st["param_bytes"]["fp32"] / 1e6, abs=5e-4)
        assert num(row["size int8 (MB)"]) == pytest.approx(st["param_bytes"]["int8"] / 1e6, abs=5e-4)
        assert num(row["clean acc (%)"]) == pytest.approx(pct(st["clean_acc"]))
        if st["robust_acc"] is None:
            assert row["robust acc (%)"] == "n/a"
        else:
            assert num(row["robust acc (%)"]) == pytest.approx(pct(st["robust_acc"]))
        assert num(row["time (s)"]) == pytest.approx(st["seconds"], abs=0.0501)
        assert num(row["energy (J)"]) == pytest.approx(st["energy_j"], abs=0.0501)
        assert [int(w) for w in row["per-layer widths"].split()] == st["widths"]
    assert "VDD_IN" in md_sections(md)["Stages"]  # the meter is named
    assert "ina3221" in md_sections(md)["Run"]


def test_tradeoff_points_accumulate_pipeline_cost(tmp_path: Path) -> None:
    points = {p.name: p for p in stage_points(load_run(make_run(tmp_path)))}
    assert points["backbone"].time_s == pytest.approx(410.5)
    assert points["era"].time_s == pytest.approx(410.5 + 12.25 + 900.0 + 1010.0)
    assert points["era"].energy_j == pytest.approx(4100.25 + 120.5 + 9050.0 + 10105.5)
    assert points["small-din"].baseline and points["small-din"].time_s == pytest.approx(3650.0)  # own cost only
    assert points["grow"].robust_pct is None and points["era"].robust_pct == pytest.approx(77.44)


def test_compared_runs_join_table_and_plots(tmp_path: Path) -> None:
    """--compare: another run's final model, at the cost of its whole run, in the table and the points."""
    run = make_run(tmp_path / "a")
    other = tmp_path / "small-aug-s0"
    other.mkdir()
    stages = [_stage("baseline", "baseline", 1_290_000, [40, 24, 80, 56, 150, 96, 128, 110], 0.61, 0.55, 300.0, None, 11)]
    stages.insert(0, _stage("warmup", "train", 1_290_000, [40, 24, 80, 56, 150, 96, 128, 110], 0.3, None, 20.5, None, 1))
    (other / "summary.json").write_text(json.dumps({"pipeline": "small-aug", "stages": stages}))
    _, md_path = build_report(run, tmp_path / "out", compare=[other])
    (table,) = md_tables(md_sections(md_path.read_text())["Stages"])
    row = table[-1]
    assert row["stage"] == "small-aug-s0" and row["kind"] == "run: small-aug"
    assert num(row["time (s)"]) == pytest.approx(320.5) and num(row["epochs"]) == 12 and row["energy (J)"] == "n/a"
    assert num(row["clean acc (%)"]) == 61.0 and num(row["robust acc (%)"]) == 55.0
    loaded = load_run(run)
    loaded.compared = [compared_entry(load_run(other))]
    point = {p.name: p for p in stage_points(loaded)}["small-aug-s0"]
    assert point.baseline and point.time_s == pytest.approx(320.5) and point.energy_j is None
    with pytest.raises(ArtifactError, match="does not exist"):
        build_report(run, tmp_path / "out", compare=[tmp_path / "nope"])
    # its stages recorded no per-epoch accuracies: the curves figure says so instead of drawing a lone point
    curves = md_sections(md_path.read_text())["Time to accuracy"]
    assert "![" in curves and "Left out (no per-epoch accuracies): small-aug-s0." in curves


def test_the_time_to_accuracy_curve_is_cumulative_training_time(tmp_path: Path) -> None:
    from gear_trt.records import run_curve

    run = make_run(tmp_path)
    points = run_curve(json.loads((run / "summary.json").read_text()))
    # backbone's 4 epochs, the growth stage's end, then the grown stage's epochs counted from where growth ended
    assert [(p["stage"], p["epoch"]) for p in points[:6]] == [("backbone", 1), ("backbone", 2), ("backbone", 3), ("backbone", 4),
                                                             ("grow", None), ("grown", 1)]
    assert [p["seconds"] for p in points[:6]] == pytest.approx([102.625, 205.25, 307.875, 410.5, 422.75, 422.75 + 225.0])
    assert points[3]["clean_acc"] == pytest.approx(0.7123) and points[4]["robust_probe_acc"] is None


def test_robustness_table_matches_eval_json(full_report: tuple[Path, str, str]) -> None:
    run, html, md = full_report
    (table,) = md_tables(md_sections(md)["Robustness by corruption"])
    assert [(r["model"], r["precision"], r["backend"]) for r in table] == [
        ("backbone", "fp32", "torch"), ("era", "fp32", "torch"), ("era", "int8", "onnxruntime")]
    for row, name in zip(table, ("backbone.json", "era.json", "era-int8.json")):
        ev = json.loads((run / "eval" / name).read_text())
        ev = ev.get("corruptions", ev)  # `gear-trt eval --json` nests the sweep
        assert num(row["clean acc (%)"]) == pytest.approx(pct(ev["clean_acc"]))
        assert num(row["mean corruption acc (%)"]) == pytest.approx(pct(ev["mean_corruption_acc"]))
        for s in "12345":
            mean_s = sum(t[s] for t in ev["acc"].values()) / len(ev["acc"])
            assert num(row[f"severity {s} (%)"]) == pytest.approx(pct(mean_s))
        assert row["hardest corruption"].startswith("jpeg_compression")  # lowest by construction
    assert len(re.findall(r"<figcaption>[^<]*extra corruption, not in the mean", html)) == 3


def test_width_table_matches_growth_json(full_report: tuple[Path, str, str]) -> None:
    run, _, md = full_report
    growth = json.loads((run / "growth.json").read_text())
    section = md_sections(md)["Width profile"]
    (table,) = md_tables(section)
    body, total = table[:-1], table[-1]
    assert [r["layer group"] for r in body] == growth["group_names"]
    for row, b, a in zip(body, growth["widths_before"], growth["widths_after"]):
        assert num(row["before growth (channels)"]) == b and num(row["after growth (channels)"]) == a
        assert num(row["growth factor"]) == pytest.approx(a / b, abs=5e-3)
    assert num(total["before growth (channels)"]) == sum(growth["widths_before"])
    assert num(total["after growth (channels)"]) == sum(growth["widths_after"])
    assert "ratio = 0.9" in section


def test_multi_shot_growth_series() -> None:
    groups, series = growth_series({"group_names": ["a", "b"], "shots": [
        {"widths_before": [4, 8], "widths_after": [6, 10]}, {"widths_before": [6, 10], "widths_after": [9, 12]}]})
    assert groups == ["a", "b"]
    assert series == [("before growth", [4, 8]), ("after shot 1", [6, 10]), ("after shot 2", [9, 12])]
    groups, series = growth_series({"widths_before": [4, 8, 2], "widths_after": [5, 9]})  # no names, ragged
    assert groups == ["group 0", "group 1", "group 2"] and series[1][1] == [5, 9, None]


def test_deployment_table_matches_bench_json(full_report: tuple[Path, str, str]) -> None:
    run, _, md = full_report
    rows = json.loads((run / "bench.json").read_text())["rows"]
    (table,) = md_tables(md_sections(md)["Deployment"])
    assert len(table) == len(rows)
    # sorted by stage order, then backend, then precision
    assert [(r["model"], r["backend"], r["precision"]) for r in table][:4] == [
        ("backbone", "tensorrt", "fp32"), ("grown", "onnxruntime", "fp32"), ("grown", "onnxruntime", "int8"), ("grown", "tensorrt", "fp16")]
    by_key = {(r["model"], r["backend"], r["precision"]): r for r in rows}
    for row in table:
        src = by_key[(row["model"], row["backend"], row["precision"])]
        if "size_bytes" not in src:  # the bare row: every number n/a, nothing crashes
            assert all(row[h] == "n/a" for h in list(row)[3:])
            continue
        assert num(row["size (MB)"]) == pytest.approx(src["size_bytes"] / 1e6, abs=5e-4)
        assert num(row["clean acc (%)"]) == pytest.approx(pct(src["clean_acc"]))
        assert num(row["robust acc (%)"]) == pytest.approx(pct(src["corruption_acc"]))
        for p in ("p50", "p90", "p99"):
            assert num(row[f"latency {p} (ms)"]) == pytest.approx(src["latency"][f"{p}_ms"], abs=5e-4)
        assert num(row["throughput (img/s)"]) == pytest.approx(src["throughput"]["throughput_ips"], abs=0.0501)
        if src["joules_per_image"] is None:
            assert row["energy (mJ/image)"] == "n/a"
        else:
            assert num(row["energy (mJ/image)"]) == pytest.approx(1000 * src["joules_per_image"], abs=5e-4)


def test_optional_inputs_are_skipped_with_a_note(tmp_path: Path) -> None:
    run = make_run(tmp_path, growth=False, evals=False, bench=False, energy=False, curves=False)
    (run / "manifest.json").unlink()
    html_path, md_path = build_report(run, tmp_path / "out")
    assert html_path.parent == tmp_path / "out"
    md = md_path.read_text()
    sections = md_sections(md)
    assert list(sections) == list(SECTION_TITLES)
    for title in ("Time to accuracy", "Robustness by corruption", "Width profile", "Deployment"):
        assert sections[title].strip().startswith("Not available:") and not md_tables(sections[title])
    assert "times only" in sections["Stages"]
    (table,) = md_tables(sections["Stages"])
    assert all(r["energy (J)"] == "n/a" for r in table)
    assert "Not available:" in html_path.read_text()


def test_tolerates_missing_keys_and_bad_optional_files(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"stages": [{"name": "backbone"}, "junk", {"name": "era", "robust_acc": None}]}))
    (run / "growth.json").write_text("{not json")
    (run / "eval").mkdir()
    (run / "eval" / "era-fp16.json").write_text(json.dumps({"acc": {"fog": {"1": 0.5, "3": None}}}))
    _, md_path = build_report(run)
    md = md_path.read_text()
    sections = md_sections(md)
    (stages,) = md_tables(sections["Stages"])
    assert [r["stage"] for r in stages] == ["backbone", "era"]
    assert all(v == "n/a" for r in stages for k, v in r.items() if k != "stage")
    assert "growth.json: unreadable" in sections["Run"]
    (robust,) = md_tables(sections["Robustness by corruption"])
    assert (robust[0]["model"], robust[0]["precision"], robust[0]["backend"]) == ("era", "fp16", "n/a")  # from the file name
    assert num(robust[0]["mean corruption acc (%)"]) == 50.0 and robust[0]["severity 3 (%)"] == "n/a"


def test_bad_run_directories_raise_gear_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        build_report(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="no summary.json"):
        build_report(tmp_path)
    (tmp_path / "summary.json").write_text("[1, 2")
    with pytest.raises(GearError, match="not valid JSON"):
        build_report(tmp_path)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "small"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"stages": [_stage("backbone", "train", 1000, [4, 8], 0.5, None, 3.0, None, 1)]}))
    assert cli_main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file() and "report.md" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "fix:" in err
