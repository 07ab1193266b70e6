#!/usr/bin/env python
"""Reproduce the paper's comparison: GEARnn-2, GEARnn-1, Small(D_in), Small(D_aug) at equal final size, over seeds.

    python tools/paper_comparison.py --out OUT [--preset cpu|paper] [--seeds 0 1 2] [--arch vgg19]
                                     [--data ../shared/data/cifar10-jpeg.zip] [--sensitivity 0.3 0.6 0.9 1.2]

For each seed: a GEARnn-2 run fixes the final size; GEARnn-1 grows to the same budget; both Small
baselines copy the GEARnn-2 grown spec (--like), so all four end at the same widths or budget.
Writes OUT/comparison.json and OUT/comparison.md (mean +/- std over seeds: clean and robust accuracy,
wall time, energy, and the time/energy ratios the paper reports for GEARnn-2 vs Small(D_aug)).
With --sensitivity: GEARnn-2 at each growth ratio and seed -> OUT/sensitivity.json and sensitivity.png (mean ± std).

Presets: "cpu" = the quick schedule on 500 train / 100 test images per class of CIFAR-10 (JPEG)
(about 8.5 minutes per seed on a 2-core CPU for vgg19; results in docs/paper_comparison.md); "paper" = 40/1/40/40 and 160 epochs on the full
data (a GPU job). Runs already finished in OUT are reused (each run directory resumes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PIPELINES = ("gearnn2", "gearnn1", "small-clean", "small-aug")
LABELS = {"gearnn2": "GEARnn-2", "gearnn1": "GEARnn-1", "small-clean": "Small(D_in)", "small-aug": "Small(D_aug)"}
PRESETS = {
    "cpu": {"preset": "quick", "train_per_class": 500, "test_per_class": 100, "robust_eval": "200"},
    "paper": {"preset": "paper", "train_per_class": None, "test_per_class": None, "robust_eval": "full"},
}


def run_one(out: Path, name: str, **options: Any) -> dict[str, Any]:
    from gear_trt.pipeline.rundir import RunDir
    from gear_trt.pipeline.stages import GrowOptions, run_pipeline

    path = out / name
    run = RunDir.create(path, "grow", resume=path.exists(), argv=[f"{k}={v}" for k, v in options.items()])
    print(f"== {name}", file=sys.stderr)
    return run_pipeline(run, GrowOptions(**options).validate(), echo=lambda line: print(f"   {line}", file=sys.stderr))


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


def mean_std(values: list[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(m: Optional[float], s: Optional[float], scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if m is None else f"{m * scale:.{digits}f} ± {(s or 0) * scale:.{digits}f}"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", choices=PRESETS, default="cpu")
    ap.add_argument("--arch", default="vgg19")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--growth-ratio", type=float, help="default: the paper's ratio for the arch")
    ap.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    ap.add_argument("--sensitivity", type=float, nargs="*", help="growth ratios for the sensitivity study (GEARnn-2, every seed)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    base = dict(PRESETS[args.preset], arch=args.arch, data=args.data, device=args.device)
    rows: dict[str, list[dict[str, Any]]] = {p: [] for p in args.pipelines}
    for seed in args.seeds:
        g2 = run_one(args.out, f"gearnn2-s{seed}", pipeline="gearnn2", seed=seed, growth_ratio=args.growth_ratio, **base)
        final_widths = g2["stages"][-1]["widths"]
        for p in args.pipelines:
            if p == "gearnn2":
                summary = g2
            elif p == "gearnn1":
                summary = run_one(args.out, f"gearnn1-s{seed}", pipeline=p, seed=seed, growth_ratio=args.growth_ratio, **base)
            else:
                summary = run_one(args.out, f"{p}-s{seed}", pipeline=p, seed=seed, like=str(args.out / f"gearnn2-s{seed}"), **base)
            rows[p].append({"seed": seed, **final(summary), "widths_equal_to_gearnn2": summary["stages"][-1]["widths"] == final_widths})

    table: dict[str, Any] = {}
    for p, runs in rows.items():
        table[p] = {k: mean_std([r[k] for r in runs]) for k in ("clean_acc", "robust_acc", "seconds", "energy_j", "params")}
        table[p]["runs"] = runs
    ratios: dict[str, Any] = {}
    if "gearnn2" in rows and "small-aug" in rows:
        t = [b["seconds"] / a["seconds"] for a, b in zip(rows["gearnn2"], rows["small-aug"])]
        ratios["time_small_aug_over_gearnn2"] = mean_std(t)
        e = [b["energy_j"] / a["energy_j"] for a, b in zip(rows["gearnn2"], rows["small-aug"]) if a["energy_j"] and b["energy_j"]]
        ratios["energy_small_aug_over_gearnn2"] = mean_std(e) if e else (None, None)
    result = {"preset": args.preset, "arch": args.arch, "data": args.data, "seeds": args.seeds, "table": table, "ratios": ratios}
    (args.out / "comparison.json").write_text(json.dumps(result, indent=2))

    lines = [f"# Paper comparison: {args.arch}, preset {args.preset}, seeds {args.seeds}", "",
             "| method | params | clean % | robust % | wall time s | energy J |", "|---|---|---|---|---|---|"]
    for p in rows:
        t = table[p]
        lines.append(f"| {LABELS[p]} | {t['params'][0]:,.0f} | {fmt(*t['clean_acc'], 100)} | {fmt(*t['robust_acc'], 100)} | "
                     f"{fmt(*t['seconds'], 1, 1)} | {fmt(*t['energy_j'], 1, 0)} |")
    if ratios:
        times, energies = fmt(*ratios["time_small_aug_over_gearnn2"]), fmt(*ratios["energy_small_aug_over_gearnn2"])
        lines += ["", f"Small(D_aug) / GEARnn-2 wall time: {times}{'x' if times != 'n/a' else ''} (paper, Jetson: 2.3x); "
                      f"energy: {energies}{'x' if energies != 'n/a' else ''} (paper: 2.8x; n/a without an energy meter)."]
    (args.out / "comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    if args.sensitivity:
        from gear_trt.pipeline.stages import PAPER_GROWTH_RATIO

        default_ratio = args.growth_ratio if args.growth_ratio is not None else PAPER_GROWTH_RATIO[args.arch]
        sens = []
        for ratio in args.sensitivity:
            runs = []
            for seed in args.seeds:
                if ratio == default_ratio:  # that run exists already: the seed's GEARnn-2
                    s = json.loads((args.out / f"gearnn2-s{seed}" / "summary.json").read_text())
                else:
                    s = run_one(args.out, f"sensitivity-g{ratio}-s{seed}", pipeline="gearnn2", seed=seed, growth_ratio=ratio, **base)
                runs.append({"seed": seed, **final(s)})
            sens.append(sensitivity_row(ratio, runs))
        lines = ["", f"## Sensitivity: GEARnn-2 against the growth ratio (mean ± std over seeds {args.seeds})", "",
                 "| growth ratio γ | params | clean % | robust % | wall time s |", "|---|---|---|---|---|"]
        for r in sens:
            lines.append(f"| {r['growth_ratio']} | {r['params'][0]:,.0f} | {fmt(*r['clean_acc'], 100)} | {fmt(*r['robust_acc'], 100)} | "
                         f"{fmt(*r['seconds'], 1, 1)} |")
        with (args.out / "comparison.md").open("a") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
        (args.out / "sensitivity.json").write_text(json.dumps(sens, indent=2))
        plot_sensitivity(sens, args.out / "sensitivity.png")
        print(f"sensitivity: {args.out / 'sensitivity.png'}")
    return 0


def sensitivity_row(ratio: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One growth ratio: (mean, std) over seeds of every final figure, plus the runs themselves."""
    return {"growth_ratio": ratio, **{k: mean_std([r[k] for r in runs]) for k in ("clean_acc", "robust_acc", "seconds", "params")},
            "runs": runs}


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


if __name__ == "__main__":
    sys.exit(main())
