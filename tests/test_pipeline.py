"""The GEARnn pipelines: a checkpoint and a summary entry per stage, and resume after a kill."""

from __future__ import annotations

import json

import pytest
import torch

from gear_trt.cli.main import main
from gear_trt.models import backbone_spec, count_params, load_model
from gear_trt.pipeline import stages
from gear_trt.pipeline.rundir import RunDir
from gear_trt.pipeline.stages import GrowOptions, run_pipeline

TINY = dict(train_per_class=12, test_per_class=4, batch_size=30, epochs_scale=0.25, robust_eval="none", preset="quick", pipeline="gearnn2")


def _run(tmp_path, name="run", **kw):
    opts = GrowOptions(**{**TINY, **kw})
    run = RunDir.create(tmp_path / name, "grow", resume=(tmp_path / name).exists(), argv=[])
    lines: list[str] = []
    return run, run_pipeline(run, opts, echo=lines.append), lines


def test_gearnn2_writes_a_deployable_checkpoint_per_stage(tmp_path):
    run, summary, _ = _run(tmp_path, growth_ratio=0.5, post_growth_lr=0.3, ema=0.99)
    names = [s["name"] for s in summary["stages"]]
    assert names == ["backbone", "grow", "grown", "robust"]
    from gear_trt.artifacts.checkpoint import load_checkpoint

    trained = {n: load_checkpoint(run.path / "checkpoints" / f"{n}.pt") for n in ("backbone", "grown", "robust")}
    peak = {n: c["config"]["lr"] for n, c in trained.items()}
    assert peak == {"backbone": 0.1, "grown": pytest.approx(0.03), "robust": pytest.approx(0.03)}  # the stages after growth fine-tune
    assert all(c["config"]["ema"] == 0.99 and "training_model" in c for c in trained.values())  # --ema reaches every stage
    on_disk = json.loads((run.path / "summary.json").read_text())
    assert on_disk["stages"] == summary["stages"]
    for s in summary["stages"]:
        model, spec, _ = load_model(run.path / s["checkpoint"])
        assert count_params(spec) == s["params"] == sum(p.numel() for p in model.parameters())
        assert list(spec.widths) == s["widths"]
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
        assert 0 <= s["clean_acc"] <= 1 and s["seconds"] > 0
    spec0 = backbone_spec("vgg19")
    assert summary["stages"][0]["widths"] == list(spec0.widths)
    growth = json.loads((run.path / "growth.json").read_text())
    assert sum(growth["widths_after"]) == sum(spec0.widths) + round(0.5 * sum(spec0.widths))  # gamma = 0.5, exact
    assert growth["widths_after"] == summary["stages"][1]["widths"] == summary["stages"][3]["widths"]
    assert len(growth["scores"]) == len(spec0.widths)


def test_a_killed_pipeline_resumes_without_redoing_finished_stages(tmp_path, monkeypatch):
    real_train = stages.train
    calls: list[str] = []

    def dies_in_grown(*args, **kwargs):
        calls.append(kwargs["stage"])
        if kwargs["stage"] == "grown":
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(stages, "train", dies_in_grown)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, growth_ratio=0.3)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["backbone"]["status"] == "done"
    assert manifest["stages"]["grown"]["status"] == "interrupted"
    backbone_bytes = (tmp_path / "run" / "checkpoints" / "backbone.pt").read_bytes()

    monkeypatch.setattr(stages, "train", real_train)
    calls.clear()
    _, summary, lines = _run(tmp_path, growth_ratio=0.3)
    assert "backbone: done already, skipping" in lines and "grow: done already, skipping" in lines
    assert [s["name"] for s in summary["stages"]] == ["backbone", "grow", "grown", "robust"]
    assert (tmp_path / "run" / "checkpoints" / "backbone.pt").read_bytes() == backbone_bytes


def test_small_baseline_matches_the_grown_size_with_like(tmp_path):
    run, summary, _ = _run(tmp_path, growth_ratio=0.4, pipeline="gearnn1")
    assert [s["name"] for s in summary["stages"]] == ["backbone", "grow", "grown"]
    _, base, _ = _run(tmp_path, name="small", pipeline="small-aug", like=str(run.path))
    assert base["stages"][0]["widths"] == summary["stages"][-1]["widths"]
    assert base["stages"][0]["augmented"] is True


def test_small_baseline_fits_a_parameter_budget(tmp_path):
    _, summary, _ = _run(tmp_path, pipeline="small-clean", budget="150k")
    s = summary["stages"][0]
    assert 100_000 < s["params"] <= 150_000 and s["augmented"] is False


def test_grow_cli_prints_the_stage_table_and_rejects_bad_budgets(tmp_path, capsys):
    code = main(["grow", "--out", str(tmp_path / "cli"), "--budget", "400k", "--train-per-class", "12", "--test-per-class", "4",
                 "--batch-size", "30", "--epochs-scale", "0.25", "--robust-eval", "none", "--arch", "mobilenet_v1"])
    out = capsys.readouterr()
    assert code == 0
    assert "stage" in out.out and "robust" in out.out and "clean %" in out.out
    assert main(["grow", "--out", str(tmp_path / "bad"), "--budget", "10k", "--train-per-class", "12", "--test-per-class", "4",
                 "--batch-size", "30", "--robust-eval", "none"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "backbone 1/" not in err  # refused before any training
    assert err.strip().splitlines()[-1].startswith("gear-trt grow: error: budget 10,000 parameters is below the backbone")
    assert not (tmp_path / "bad").exists()


def test_stage_epochs_override_the_preset_and_grown_0_goes_straight_to_the_robust_stage(tmp_path):
    from gear_trt.artifacts.checkpoint import load_checkpoint
    from gear_trt.errors import ConfigError

    run, summary, _ = _run(tmp_path, growth_ratio=0.5, stage_epochs="2,0,1,3", epochs_scale=1.0)
    assert [(s["name"], s["epochs"]) for s in summary["stages"]] == [("backbone", 2), ("grow", 1), ("robust", 1)]
    assert load_checkpoint(run.path / "checkpoints" / "robust.pt")["epoch"] == 1
    for bad in ("2,0,1", "0,1,1,1", "1,-1,1,1", "a,b,c,d"):
        with pytest.raises(ConfigError, match="is not four whole numbers backbone,grown,robust,baseline"):
            GrowOptions(stage_epochs=bad).validate()


def test_one_schedule_gives_each_stage_its_share_of_one_cosine(tmp_path):
    from gear_trt.artifacts.checkpoint import load_checkpoint

    run, summary, _ = _run(tmp_path, growth_ratio=0.5, stage_epochs="2,1,1,4", epochs_scale=1.0, one_schedule=True, warmup_epochs=0)
    ckpt = {n: load_checkpoint(run.path / "checkpoints" / f"{n}.pt") for n in ("backbone", "grown", "robust")}
    assert {n: c["config"]["cosine_span"] for n, c in ckpt.items()} == {"backbone": [0.0, 0.5], "grown": [0.5, 0.75], "robust": [0.75, 1.0]}
    # each epoch's last step sits on one cosine over all 4 epochs' steps: 0.1 * (1 + cos(pi * g)) / 2, g = global step / all steps
    import math

    steps = ckpt["backbone"]["steps_per_epoch"]
    last = [r["lr"] for n in ("backbone", "grown", "robust") for r in ckpt[n]["history"]]
    assert last == pytest.approx([0.05 * (1 + math.cos(math.pi * ((k + 1) * steps - 1) / (4 * steps))) for k in range(4)])


def test_new_neuron_warmup_applies_to_the_first_stage_after_growth_only(tmp_path, monkeypatch):
    from gear_trt.artifacts.checkpoint import load_checkpoint

    real_train = stages.train
    seen: dict[str, int] = {}

    def counting(*args, **kwargs):
        masks = kwargs.get("new_neurons")
        seen[kwargs["stage"]] = sum(int(m.sum()) for m in masks.values()) if masks else 0
        return real_train(*args, **kwargs)

    monkeypatch.setattr(stages, "train", counting)
    for name, stage_epochs, first in (("two", "1,1,1,2", "grown"), ("straight", "1,0,1,2", "robust")):
        seen.clear()
        run, summary, _ = _run(tmp_path, name, growth_ratio=0.5, stage_epochs=stage_epochs, epochs_scale=1.0, new_neuron_warmup=2)
        trained = [s["name"] for s in summary["stages"] if s["name"] != "grow"]
        added = summary["stages"][1]["params"] - summary["stages"][0]["params"]
        assert seen == {n: added if n == first else 0 for n in trained}
        configs = {n: load_checkpoint(run.path / "checkpoints" / f"{n}.pt")["config"] for n in trained}
        assert {n: c.get("new_neuron_warmup") for n, c in configs.items()} == {n: 2.0 if n == first else None for n in trained}
