"""A sweep's results, read from its run directories: one table of trials, and the paper's views of them.

The same files come from any sweep of the same SPEC, wherever it ran (laptop, local Ray, a cluster
writing to a shared disk), because they are computed from the run directories alone:

    results.csv / .json / .md    one row per trial: its axes, status, size, accuracies, time, energy;
                                 results.md adds mean ± std over seeds when seed is an axis
    comparison.json / .md        when two or more pipelines ran at the same grid point: one row per
                                 method (mean ± std over seeds) and Small(D_aug) / GEARnn-2 time and energy
    sensitivity.json / .png      when gearnn2 ran at two or more growth ratios: accuracy and cost per ratio

Stdlib at import time; matplotlib only for the figure.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from gear_trt.choices import PIPELINES
from gear_trt.errors import ArtifactError
from gear_trt.sweep.curves import curves_markdown, plot_curves, time_to_accuracy
from gear_trt.io import atomic_write_text
from gear_trt.pipeline import deploy_cost

if TYPE_CHECKING:
    from gear_trt.rundir import RunDir
    from gear_trt.sweep.spec import Plan, Trial

# display names, in the order the paper's table lists the methods
LABELS = {name: pipeline.label for name, pipeline in PIPELINES.items()}
METRICS = ("clean_acc", "robust_acc", "seconds", "energy_j", "params", "int8_bytes", "ort_latency_ms")
DEPLOY_METRICS = ("int8_bytes", "ort_latency_ms")  # SPEC deploy_cost: the int8 ONNX file's bytes, onnxruntime p50 at batch 1
ATTEMPT = "sweep: attempt"  # the line logs/trial.log gets at the start of each attempt at a trial


def final(summary: dict[str, Any]) -> dict[str, Any]:
    """The run's final model and its total cost (a pipeline's result needs every one of its stages)."""
    stages = summary["stages"]
    energies = [s.get("energy_j") for s in stages]
    return {
        "clean_acc": stages[-1]["clean_acc"],
        "robust_acc": stages[-1].get("robust_acc"),
        "params": stages[-1]["params"],
        "seconds": sum(s["seconds"] for s in stages),
        "energy_j": None if any(e is None for e in energies) else sum(energies),
    }


def mean_std(values: Iterable[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(m: Optional[float], s: Optional[float], scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if m is None else f"{m * scale:.{digits}f} ± {(s or 0) * scale:.{digits}f}"


# -- reading the run directories ---------------------------------------------------------------------
def trial_status(trial: "Trial") -> str:
    """done | failed (its last attempt raised) | unfinished (killed, interrupted or running) | not started."""
    if trial.finished():
        return "done"
    failed = _last_attempt_failed(trial.log)
    if failed is None:  # no sweep log: a run directory made by `gear-trt grow`
        stages = _stages(trial.run)
        if stages is None:
            return "not started"
        failed = any(s.get("status") == "failed" for s in stages.values())
    return "failed" if failed else "unfinished"


def records(plan: "Plan") -> list[dict[str, Any]]:
    """One record per trial: name, axes, status, options, invocations and (when done) its final figures."""
    out = []
    for t in plan.trials:
        status = trial_status(t)
        rec: dict[str, Any] = {"name": t.name, "axes": t.axes, "status": status, "path": str(t.path),
                               "invocations": _invocations(t.run), "options": t.options}
        rec.update(dict.fromkeys(METRICS))
        rec["widths"] = None
        if status == "done":
            summary = t.run.read_summary() or {}  # finished: a summary with its stages
            rec.update(final(summary), widths=summary["stages"][-1]["widths"])
            cost = deploy_cost.read(t.run)  # None unless measured (SPEC deploy_cost: true)
            if cost is not None:
                rec.update({m: cost[m] for m in DEPLOY_METRICS})
        out.append(rec)
    return out


def write_report(plan: "Plan", *, figures: bool = True) -> list[Path]:
    """results.{csv,json,md}, and comparison.* / sensitivity.* where the trials allow them. Returns the paths."""
    recs = records(plan)
    comp, sens = comparison(recs), sensitivity(recs)
    out = plan.out
    written = [atomic_write_text(out / "results.csv", _csv(recs)),
               atomic_write_text(out / "results.json", json.dumps({"trials": recs, "comparison": comp, "sensitivity": sens}, indent=2) + "\n"),
               atomic_write_text(out / "results.md", results_markdown(recs))]
    tta = None
    if comp is not None:
        paths = {t.name: t.path for t in plan.trials}
        tta = time_to_accuracy({p: {r["seed"]: paths[r["trial"]] for r in t["runs"]} for p, t in comp["table"].items()})
        if tta is not None:
            comp["time_to_accuracy"] = tta.get("headline")
            written.append(atomic_write_text(out / "time_to_accuracy.json", json.dumps(tta, indent=2) + "\n"))
            if figures:
                plot_curves(tta, out / "time_to_accuracy.png")
                written.append(out / "time_to_accuracy.png")
        written.append(atomic_write_text(out / "comparison.json", json.dumps(comp, indent=2) + "\n"))
        md = comparison_markdown(comp) + (curves_markdown(tta) if tta else "") + (sensitivity_markdown(sens) if sens else "")
        written.append(atomic_write_text(out / "comparison.md", md))
    if sens:
        written.append(atomic_write_text(out / "sensitivity.json", json.dumps(sens["rows"], indent=2) + "\n"))
        if figures:
            plot_sensitivity(sens["rows"], out / "sensitivity.png")
            written.append(out / "sensitivity.png")
    return written


# -- the per-trial table ----------------------------------------------------------------------------
def _axis_keys(recs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in recs for k in r["axes"]))


def _csv(recs: list[dict[str, Any]]) -> str:
    keys = _axis_keys(recs)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", *keys, "status", *METRICS, "invocations", "path"])
    for r in recs:
        w.writerow([r["name"], *[r["axes"].get(k) for k in keys], r["status"], *["" if r[m] is None else r[m] for m in METRICS],
                    r["invocations"], r["path"]])
    return buf.getvalue()


def results_markdown(recs: list[dict[str, Any]]) -> str:
    keys = _axis_keys(recs)
    done = sum(r["status"] == "done" for r in recs)
    lines = [f"# Sweep results: {done}/{len(recs)} trials done", "",
             "| " + " | ".join([*keys, "status", "params", "clean %", "robust %", "training s", "energy J"]) + " |",
             "|" + "---|" * (len(keys) + 6)]
    for r in recs:
        lines.append("| " + " | ".join([*(str(r["axes"].get(k)) for k in keys), r["status"], _num(r["params"], "{:,.0f}"),
                                        _num(r["clean_acc"], "{:.1f}", 100), _num(r["robust_acc"], "{:.1f}", 100),
                                        _num(r["seconds"], "{:.1f}"), _num(r["energy_j"], "{:.0f}")]) + " |")
    groups = by_seed_groups(recs)
    if groups:
        gkeys = [k for k in keys if k != "seed"]
        lines += ["", "## Mean ± std over seeds", "",
                  "| " + " | ".join([*gkeys, "seeds", "params", "clean %", "robust %", "training s"]) + " |", "|" + "---|" * (len(gkeys) + 5)]
        for g in groups:
            lines.append("| " + " | ".join([*(str(g["axes"][k]) for k in gkeys), str(len(g["runs"])), _num(g["params"][0], "{:,.0f}"),
                                            _pm(g["clean_acc"], 100), _pm(g["robust_acc"], 100), _pm(g["seconds"], 1, 1)]) + " |")
    return "\n".join(lines) + "\n"


def by_seed_groups(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished trials grouped by every axis but seed, mean ± std over the seeds (when seed is an axis)."""
    done = [r for r in recs if r["status"] == "done"]
    if len({r["axes"].get("seed") for r in done if "seed" in r["axes"]}) < 2:
        return []
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in done:
        groups.setdefault(json.dumps({k: v for k, v in r["axes"].items() if k != "seed"}), []).append(r)
    return [{"axes": json.loads(k), "runs": [r["name"] for r in runs], **{m: mean_std(r[m] for r in runs) for m in METRICS}}
            for k, runs in groups.items()]


# -- the paper's comparison ---------------------------------------------------------------------------
def comparison(recs: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """GEARnn-2, GEARnn-1, Small(D_in), Small(D_aug) at one grid point, mean ± std over seeds.

    The grid point is the one (all axes but pipeline and seed) at which most pipelines finished.
    """
    done = [r for r in recs if r["status"] == "done"]
    slices: dict[str, list[dict[str, Any]]] = {}
    for r in done:
        slices.setdefault(json.dumps({k: v for k, v in r["axes"].items() if k not in ("pipeline", "seed")}), []).append(r)
    if not slices:
        return None
    key, runs = max(slices.items(), key=lambda kv: len({r["options"]["pipeline"] for r in kv[1]}))
    pipelines = [p for p in LABELS if any(r["options"]["pipeline"] == p for r in runs)]
    if len(pipelines) < 2:
        return None
    per = {p: sorted((r for r in runs if r["options"]["pipeline"] == p), key=lambda r: r["options"]["seed"]) for p in pipelines}
    g2_widths = {r["options"]["seed"]: r["widths"] for r in per.get("gearnn2", [])}
    table: dict[str, Any] = {}
    for p, rs in per.items():
        table[p] = {m: mean_std(r[m] for r in rs) for m in METRICS}
        table[p]["runs"] = [{"seed": r["options"]["seed"], "trial": r["name"], **{m: r[m] for m in METRICS},
                             "widths_equal_to_gearnn2": r["widths"] == g2_widths.get(r["options"]["seed"])} for r in rs]
    ratios: dict[str, Any] = {}
    if "gearnn2" in per and "small-aug" in per:
        pairs = [(a, b) for a in per["gearnn2"] for b in per["small-aug"] if a["options"]["seed"] == b["options"]["seed"]]
        ratios["time_small_aug_over_gearnn2"] = mean_std(b["seconds"] / a["seconds"] for a, b in pairs)
        ratios["energy_small_aug_over_gearnn2"] = mean_std(b["energy_j"] / a["energy_j"] for a, b in pairs if a["energy_j"] and b["energy_j"])
    common = {k: v for k, v in runs[0]["options"].items() if k in ("arch", "preset", "data") and all(r["options"][k] == v for r in runs)}
    seeds = sorted({r["options"]["seed"] for r in runs})
    return {**common, "grid_point": json.loads(key), "seeds": seeds, "table": table, "ratios": ratios}


def comparison_markdown(comp: dict[str, Any]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in comp["grid_point"].items())
    title = ", ".join(x for x in (comp.get("arch"), comp.get("preset") and f"preset {comp['preset']}", f"seeds {comp['seeds']}", where) if x)
    lines = [f"# Paper comparison: {title}", "",
             "| method | params | clean % | robust % | training time s | energy J | int8 size KB | ORT latency ms (batch 1, 1 thread) |",
             "|---|---|---|---|---|---|---|---|"]
    for p, t in comp["table"].items():
        # .get: a comparison.json written before the deployment columns existed reads as n/a
        lines.append(f"| {LABELS[p]} | {t['params'][0]:,.0f} | {_pm(t['clean_acc'], 100)} | {_pm(t['robust_acc'], 100)} | "
                     f"{_pm(t['seconds'], 1, 1)} | {_pm(t['energy_j'], 1, 0)} | {_pm(t.get('int8_bytes', (None, None)), 1e-3, 1)} | "
                     f"{_pm(t.get('ort_latency_ms', (None, None)), 1, 3)} |")
    ratios = comp["ratios"]
    if ratios:
        times, energies = _pm(ratios["time_small_aug_over_gearnn2"]), _pm(ratios["energy_small_aug_over_gearnn2"])
        lines += ["", f"Small(D_aug) / GEARnn-2 training time: {times}{'x' if times != 'n/a' else ''} (paper, Jetson: 2.3x); "
                      f"energy: {energies}{'x' if energies != 'n/a' else ''} (paper: 2.8x; n/a without an energy meter)."]
    return "\n".join(lines) + "\n"


# -- sensitivity to the growth ratio ----------------------------------------------------------------------
def sensitivity(recs: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """GEARnn-2 against the growth ratio (mean ± std over seeds), at the grid point with the most ratios."""
    g2 = [r for r in recs if r["status"] == "done" and r["options"]["pipeline"] == "gearnn2" and r["options"]["growth_ratio"] is not None]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in g2:
        groups.setdefault(json.dumps({k: v for k, v in r["axes"].items() if k not in ("pipeline", "seed", "growth_ratio")}), []).append(r)
    if not groups:
        return None
    key, runs = max(groups.items(), key=lambda kv: len({r["options"]["growth_ratio"] for r in kv[1]}))
    ratios = sorted({r["options"]["growth_ratio"] for r in runs})
    if len(ratios) < 2:
        return None
    rows = [sensitivity_row(g, [{"seed": r["options"]["seed"], **{m: r[m] for m in METRICS}}
                                for r in sorted(runs, key=lambda r: r["options"]["seed"]) if r["options"]["growth_ratio"] == g])
            for g in ratios]
    return {"grid_point": json.loads(key), "seeds": sorted({r["options"]["seed"] for r in runs}), "rows": rows}


def sensitivity_row(ratio: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One growth ratio: (mean, std) over seeds of every final figure, plus the runs themselves."""
    return {"growth_ratio": ratio, **{k: mean_std([r[k] for r in runs]) for k in ("clean_acc", "robust_acc", "seconds", "params")},
            "runs": runs}


def sensitivity_markdown(sens: dict[str, Any]) -> str:
    lines = ["", f"## Sensitivity: GEARnn-2 against the growth ratio (mean ± std over seeds {sens['seeds']})", "",
             "| growth ratio γ | params | clean % | robust % | training time s |", "|---|---|---|---|---|"]
    for r in sens["rows"]:
        lines.append(f"| {r['growth_ratio']} | {r['params'][0]:,.0f} | {_pm(r['clean_acc'], 100)} | {_pm(r['robust_acc'], 100)} | "
                     f"{_pm(r['seconds'], 1, 1)} |")
    return "\n".join(lines) + "\n"


def plot_sensitivity(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy and cost against the growth ratio, mean ± std over seeds (error bars: the seed noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = [r["growth_ratio"] for r in rows]
    seeds = max(len(r["runs"]) for r in rows)

    def series(key: str, scale: float) -> tuple[list[float], list[float]]:
        return [scale * r[key][0] for r in rows], [scale * (r[key][1] or 0.0) for r in rows]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.errorbar(g, *series("clean_acc", 100), fmt="o-", capsize=4, label="clean")
    if all(r["robust_acc"][0] is not None for r in rows):
        a1.errorbar([x + 0.01 for x in g], *series("robust_acc", 100), fmt="s-", capsize=4, label="robust (mean of 15 corruptions)")
    a1.set(xlabel="growth ratio γ", ylabel="accuracy (%)", title=f"Accuracy vs growth ratio (mean ± std, {seeds} seed{'s' * (seeds > 1)})")
    a1.legend(fontsize=8)
    a2.errorbar(g, *series("seconds", 1 / 60), fmt="o-", color="tab:red", capsize=4, label="training time (all stages)")
    a2b = a2.twinx()
    a2b.plot(g, [r["params"][0] / 1e6 for r in rows], "s--", color="tab:gray", label="final parameters")
    a2.set(xlabel="growth ratio γ", ylabel="training time (min)", title="Cost vs growth ratio")
    a2b.set_ylabel("final parameters (M)")
    handles = a2.get_legend_handles_labels()[0] + a2b.get_legend_handles_labels()[0]
    a2.legend(handles, [str(h.get_label()) for h in handles], loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- helpers -----------------------------------------------------------------------------------------
def _pm(pair: Any, scale: float = 1.0, digits: int = 2) -> str:
    """fmt() of a (mean, std) pair."""
    return fmt(pair[0], pair[1], scale, digits)


def _num(v: Optional[float], form: str, scale: float = 1.0) -> str:
    return "" if v is None else form.format(v * scale)


def _stages(run: "RunDir") -> Optional[dict[str, Any]]:
    """The manifest's stage records; None without a readable manifest."""
    try:
        return run.manifest.stages if run.manifest_path.is_file() else None
    except ArtifactError:
        return None


def _invocations(run: "RunDir") -> int:
    try:
        return len(run.manifest.data.get("invocations", [])) if run.manifest_path.is_file() else 0
    except ArtifactError:
        return 0


def _last_attempt_failed(log: Path) -> Optional[bool]:
    """Whether the trial's latest attempt ended in an error (its logs/trial.log, written by the sweep); None: no log."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    starts = [i for i, ln in enumerate(lines) if ATTEMPT in ln]
    return any(" error: " in ln for ln in lines[(starts[-1] if starts else 0):])
