"""Time to accuracy: the pre-corrupted probe, per-epoch curves in summary.json, the sweep's figure and headline."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from gear_trt.cli.main import main
from gear_trt.corruptions import CORRUPTIONS, sweep
from gear_trt.corruptions.probe import corrupted_probe, probe_accuracy
from gear_trt.sweep.curves import run_curve, time_to_accuracy


def test_the_probe_covers_every_corruption_evenly_and_scores_like_the_full_sweep(trained_checkpoint, real_test_set):
    from gear_trt.data import normalize
    from gear_trt.models import load_model

    model, _, _ = load_model(trained_checkpoint)
    model.eval()

    def predict(x: torch.Tensor) -> torch.Tensor:
        return model(normalize(x))

    subset = real_test_set.per_class(45, seed=0)  # 450 images: 10 per (corruption, severity) pair
    probe = corrupted_probe(subset.images, subset.labels, severities=(1, 3, 5), seed=0)
    counts = Counter(probe.pairs)
    assert set(counts) == {(c, s) for c in CORRUPTIONS for s in (1, 3, 5)} and set(counts.values()) == {10}
    again = corrupted_probe(subset.images, subset.labels, severities=(1, 3, 5), seed=0)
    assert torch.equal(again.images, probe.images)  # deterministic in the seed
    changed = (probe.images.int() - subset.images.int()).abs().flatten(1).amax(1) > 0
    assert changed.float().mean() > 0.95  # (a corruption may leave a rare image unchanged at severity 1)

    full = sweep(predict, subset.images, subset.labels, severities=(1, 3, 5), seed=0, progress=False)
    acc = probe_accuracy(predict, probe)
    # one image per pair vs every image under every pair: same expectation, binomial noise ~2.3 pp at n=450
    assert abs(acc - full.mean_corruption_acc) < 0.07, (acc, full.mean_corruption_acc, full.clean_acc)
    # each probe image is exactly the full sweep's image k under its pair (noise seeded per image index)
    from gear_trt.corruptions import corrupt

    for k in (0, 7, 449):
        name, severity = probe.pairs[k]
        assert torch.equal(probe.images[k], corrupt(subset.images[k:k + 1], name, severity, seed=0, indices=[k])[0])


def _summary(stages):
    return {"stages": stages}


def test_headline_is_small_aug_time_over_the_time_gearnn2_needs_to_come_within_one_point():
    def g2(robust):  # backbone 2 epochs (10 s each), growth 5 s, robust 2 epochs (20 s each)
        return _summary([
            {"name": "backbone", "seconds": 20.0, "curve": [{"epoch": 1, "seconds": 10.0, "clean_acc": 0.3, "robust_probe_acc": robust[0]},
                                                            {"epoch": 2, "seconds": 20.0, "clean_acc": 0.4, "robust_probe_acc": robust[1]}]},
            {"name": "grow", "seconds": 5.0, "clean_acc": 0.4, "robust_probe_acc": robust[1]},
            {"name": "robust", "seconds": 40.0, "curve": [{"epoch": 1, "seconds": 20.0, "clean_acc": 0.5, "robust_probe_acc": robust[2]},
                                                          {"epoch": 2, "seconds": 40.0, "clean_acc": 0.55, "robust_probe_acc": robust[3]}]}])

    small = _summary([{"name": "small", "seconds": 130.0, "curve": [{"epoch": 1, "seconds": 65.0, "clean_acc": 0.4, "robust_probe_acc": 0.3},
                                                                     {"epoch": 2, "seconds": 130.0, "clean_acc": 0.6, "robust_probe_acc": 0.5}]}])
    curve = run_curve(g2([0.2, 0.3, 0.45, 0.495]))
    assert [p["seconds"] for p in curve] == [10.0, 20.0, 25.0, 45.0, 65.0]  # cumulative over stages, growth included
    assert [p["stage"] for p in curve] == ["backbone", "backbone", "grow", "robust", "robust"]

    import gear_trt.sweep.curves as curves

    summaries = {"a0": g2([0.2, 0.3, 0.45, 0.495]), "a1": g2([0.2, 0.3, 0.35, 0.40]), "b0": small, "b1": small}
    orig = curves._summary
    curves._summary = lambda path: summaries[str(path)]
    try:
        tta = time_to_accuracy({"gearnn2": {0: "a0", 1: "a1"}, "small-aug": {0: "b0", 1: "b1"}})
    finally:
        curves._summary = orig
    robust = tta["headline"]["robust_probe_acc"]
    # seed 0 reaches 0.5 - 0.01 at 65 s (0.495 >= 0.49): 130 / 65 = 2x; seed 1 never does
    assert [r["speedup"] for r in robust["seeds"]] == [2.0, None] and (robust["reached"], robust["of"]) == (1, 2)
    assert robust["speedup"] == [2.0, 0.0]
    # the other way round: Small(D_aug) reaches seed 0's final 0.495 at 130 s (65 s: only 0.3), seed 1's 0.40 at 130 s; GEARnn-2 took 65 s
    assert [r["small_aug_seconds_to_gearnn2_final"] for r in robust["seeds"]] == [130.0, 130.0]
    assert robust["equal_accuracy_time_ratio"] == [2.0, 0.0]
    clean = tta["headline"]["clean_acc"]  # 0.6 - 0.01 is never reached (0.55 at the end)
    assert clean["reached"] == 0 and clean["speedup"] is None
    mean = tta["curves"]["gearnn2"]["mean"]
    assert mean[-1]["robust_probe_acc"] == pytest.approx([0.4475, 0.0672], abs=1e-4) and mean[-1]["seconds"] == [65.0, 0.0]


def test_a_comparison_sweep_writes_the_curves_figure_and_headline(tmp_path, capsys):
    spec = {"pipeline": ["gearnn2", "small-aug"], "like": "gearnn2", "growth_ratio": 0.3, "seed": [0],
            "train_per_class": 12, "test_per_class": 4, "batch_size": 30, "epochs_scale": 0.67, "robust_eval": "none",
            "curve_images": "30"}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--sequential"]) == 0
    out = tmp_path / "out"
    tta = json.loads((out / "time_to_accuracy.json").read_text())
    g2 = tta["curves"]["gearnn2"]["runs"]["0"]
    summary = json.loads((out / "pipeline=gearnn2,seed=0" / "summary.json").read_text())
    # one point per trained epoch, one for growth; time only grows; the last point is the run's final model
    assert [s["name"] for s in summary["stages"]] == ["backbone", "grow", "grown", "robust"]
    assert [p["stage"] for p in g2] == ["backbone"] * 2 + ["grow"] + ["grown"] * 2 + ["robust"]  # quick preset x 0.67: 2/2/1
    assert all(b["seconds"] >= a["seconds"] for a, b in zip(g2, g2[1:]))
    assert g2[-1]["seconds"] == pytest.approx(sum(s["seconds"] for s in summary["stages"]), rel=1e-3)
    last = summary["stages"][-1]  # the curve's accuracies are the probe's images (clean, corrupted)
    assert (g2[-1]["clean_acc"], g2[-1]["robust_probe_acc"]) == (last["probe_clean_acc"], last["robust_probe_acc"])
    assert all(0 <= p["robust_probe_acc"] <= 1 for p in g2)
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["time_to_accuracy"]["robust_probe_acc"]["of"] == 1
    assert (out / "time_to_accuracy.png").stat().st_size > 10_000
    assert "## Time to accuracy" in (out / "comparison.md").read_text()
