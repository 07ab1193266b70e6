"""Time to accuracy: each method's clean and robust accuracy against cumulative training time.

A run's curve is read from its summary.json alone: every training stage records, per epoch, its
training seconds so far (evaluation excluded) and its accuracies (`curve`, written by the pipeline);
a growth stage is one point at its end. Both accuracies are the probe's (gear_trt.corruptions.probe:
a fixed test subset, clean and with every corruption and severity, one per image), the figures
measured after every epoch; the comparison table's columns are the whole test set and the full
corruption sweep at stage ends.

The headline (the paper's claim, measured): the training time GEARnn-2 needs to come within
`TOLERANCE` of Small(D_aug)'s final accuracy, divided into Small(D_aug)'s whole training time,
per seed (the same seed's runs), then mean ± std over the seeds that reached it.

Stdlib at import time; matplotlib only for the figure.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Optional

from gear_trt.choices import PIPELINES
from gear_trt.records import CURVE_KEYS as KEYS
from gear_trt.records import run_curve

TOLERANCE = 0.01  # "within 1 pp" (issue 12)
LABELS = {name: pipeline.label for name, pipeline in PIPELINES.items()}


def time_to_reach(curve: list[dict[str, Any]], key: str, target: float) -> Optional[float]:
    """Training seconds at the first point whose `key` accuracy is >= target (None: never)."""
    return next((p["seconds"] for p in curve if p.get(key) is not None and p[key] >= target), None)


def mean_curve(curves: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Point by point over seeds (the runs of one method share a schedule): mean and std of time and accuracies."""
    n = min(len(c) for c in curves)
    out = []
    for i in range(n):
        row: dict[str, Any] = {"stage": curves[0][i]["stage"], "epoch": curves[0][i]["epoch"]}
        for key in ("seconds", *KEYS):
            vals = [c[i][key] for c in curves if c[i].get(key) is not None]
            row[key] = [statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0] if vals else None
        out.append(row)
    return out


def time_to_accuracy(runs: dict[str, dict[int, Path]]) -> Optional[dict[str, Any]]:
    """runs: {pipeline: {seed: run directory}} of one comparison. None when no run recorded a curve."""
    curves = {p: {seed: run_curve(_summary(path)) for seed, path in by_seed.items()} for p, by_seed in runs.items()}
    curves = {p: {s: c for s, c in by_seed.items() if len(c) > 1} for p, by_seed in curves.items()}
    curves = {p: by_seed for p, by_seed in curves.items() if by_seed}
    if not curves:
        return None
    result: dict[str, Any] = {"tolerance": TOLERANCE, "curves": {p: {"runs": {str(s): c for s, c in by_seed.items()},
                                                                     "mean": mean_curve(list(by_seed.values()))}
                                                                 for p, by_seed in curves.items()}}
    if "gearnn2" in curves and "small-aug" in curves:
        result["headline"] = {key: _speedup(curves["gearnn2"], curves["small-aug"], key) for key in KEYS}
    return result


def _speedup(fast: dict[int, list[dict[str, Any]]], slow: dict[int, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    """Per seed: Small(D_aug)'s training time over the time GEARnn-2 needs to come within TOLERANCE of its final `key`."""
    per_seed = []
    for seed in sorted(set(fast) & set(slow)):
        final = slow[seed][-1].get(key)
        if final is None:
            continue
        reached = time_to_reach(fast[seed], key, final - TOLERANCE)
        fast_final = fast[seed][-1].get(key)
        # the other way round: when Small(D_aug) is as accurate as GEARnn-2's final model
        small_same = None if fast_final is None else time_to_reach(slow[seed], key, fast_final)
        per_seed.append({"seed": seed, "target": final - TOLERANCE, "gearnn2_seconds": reached, "small_aug_seconds": slow[seed][-1]["seconds"],
                         "gearnn2_final": fast_final, "gearnn2_total_seconds": fast[seed][-1]["seconds"],
                         "small_aug_seconds_to_gearnn2_final": small_same,
                         "speedup": None if reached is None else slow[seed][-1]["seconds"] / reached})
    speedups = [r["speedup"] for r in per_seed if r["speedup"] is not None]
    same = [r["small_aug_seconds_to_gearnn2_final"] / r["gearnn2_total_seconds"] for r in per_seed
            if r["small_aug_seconds_to_gearnn2_final"] is not None and r["gearnn2_total_seconds"]]
    return {"seeds": per_seed, "reached": len(speedups), "of": len(per_seed), "speedup": _ms(speedups),
            # Small(D_aug)'s time to GEARnn-2's final accuracy over GEARnn-2's time: > 1 means growth got there sooner
            "equal_accuracy_time_ratio": _ms(same)}


def _ms(values: list[float]) -> Optional[list[float]]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0] if values else None


def curves_markdown(tta: dict[str, Any]) -> str:
    lines = ["", "## Time to accuracy", "",
             f"Accuracy after every epoch against cumulative training time (evaluation excluded); robust = the pre-corrupted "
             f"probe (every corruption and severity, one per image). Headline: Small(D_aug)'s training time divided by the time "
             f"GEARnn-2 needs to come within {100 * TOLERANCE:.0f} pp of Small(D_aug)'s final accuracy, per seed; paper (Jetson): 2.3x.", ""]
    head = tta.get("headline")
    if head:
        lines += ["| accuracy | GEARnn-2 reaches Small(D_aug) - 1 pp | speedup (mean ± std) | per seed | "
                  "Small(D_aug)'s time to GEARnn-2's final accuracy / GEARnn-2's time |", "|---|---|---|---|---|"]
        for key, label in (("robust_probe_acc", "robust (probe)"), ("clean_acc", "clean")):
            h = head[key]
            per = ", ".join(f"seed {r['seed']}: " + ("not reached" if r["speedup"] is None else f"{r['speedup']:.2f}x") for r in h["seeds"])
            sp = "n/a" if h["speedup"] is None else f"{h['speedup'][0]:.2f}x ± {h['speedup'][1]:.2f}"
            eq = h.get("equal_accuracy_time_ratio")
            lines.append(f"| {label} | {h['reached']} of {h['of']} seeds | {sp} | {per} | "
                         f"{'n/a' if eq is None else f'{eq[0]:.2f} ± {eq[1]:.2f}'} |")
    lines += ["", "| method | final time s | final clean % | final robust (probe) % |", "|---|---|---|---|"]
    for p, c in tta["curves"].items():
        last = c["mean"][-1]
        lines.append(f"| {LABELS.get(p, p)} | {_pm(last['seconds'])} | {_pm(last['clean_acc'], 100)} | {_pm(last['robust_probe_acc'], 100)} |")
    return "\n".join(lines) + "\n"


def plot_curves(tta: dict[str, Any], path: Path) -> None:
    """Clean and robust accuracy against training minutes: per method the mean over seeds, the band ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in zip(axes, ("clean_acc", "robust_probe_acc"), ("Clean accuracy", "Robust accuracy (pre-corrupted probe)")):
        for p, c in tta["curves"].items():
            rows = [r for r in c["mean"] if r[key] is not None]
            t = [r["seconds"][0] / 60 for r in rows]
            m = [100 * r[key][0] for r in rows]
            s = [100 * r[key][1] for r in rows]
            line, = ax.plot(t, m, "-", marker=".", label=f"{LABELS.get(p, p)} ({len(c['runs'])} seed{'s' * (len(c['runs']) > 1)})")
            ax.fill_between(t, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=line.get_color(), alpha=0.2)
        small = tta["curves"].get("small-aug")
        if small and small["mean"][-1][key] is not None:
            ax.axhline(100 * (small["mean"][-1][key][0] - TOLERANCE), color="gray", ls="--", lw=1, label="Small(D_aug) final - 1 pp")
        ax.set(xlabel="training time (min)", ylabel="accuracy (%)", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _summary(path: Path) -> dict[str, Any]:
    from gear_trt.errors import ArtifactError
    from gear_trt.rundir import RunDir

    try:
        return RunDir(Path(path)).read_summary() or {}
    except (ArtifactError, OSError, ValueError):
        return {}


def _pm(pair: Any, scale: float = 1.0) -> str:
    return "n/a" if pair is None else f"{pair[0] * scale:.1f} ± {pair[1] * scale:.1f}"
