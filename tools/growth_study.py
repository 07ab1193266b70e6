#!/usr/bin/env python
"""Growers side by side: loss and accuracy right after growth, after the grown stage, after the robust stage.

    python tools/growth_study.py --data ../shared/data/cifar10-jpeg.zip --train-per-class 500 --test-per-class 100 \
        --families vgg19 mobilenet_v1 resnet18 --growers firefly gradmax random --seeds 0 1 2 --out OUT

Per (family, seed) one backbone is trained (the quick preset's schedule, as `gear-trt grow` runs it) and
every grower grows that same backbone, so the growers differ only in growth. Each finished row is
appended to OUT/rows.jsonl at once; a re-run skips the rows already there (the study resumes).
`--ratios` adds a growth-ratio sensitivity (grown stage only) for the first grower.
Prints a Markdown table, mean ± std over seeds; growth time is given in backbone epochs (same run).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ce_acc(model, loader) -> tuple[float, float]:
    from gear_trt.train.loop import evaluate_loss_accuracy

    return evaluate_loss_accuracy(model, loader)


def _robust(model, test_set, seed: int, images: int) -> float:
    """Mean accuracy over the 15 corruptions at severities 1/3/5 on `images` test images (the quick preset's sweep)."""
    import torch

    from gear_trt.corruptions.sweep import sweep
    from gear_trt.data import normalize

    subset = test_set.per_class(math.ceil(images / len(test_set.classes)), seed=seed)
    model.eval()

    @torch.no_grad()
    def predict(x):
        return model(normalize(x))

    return float(sweep(predict, subset.images, subset.labels, severities=(1, 3, 5), seed=seed, batch_size=256, progress=False).mean_corruption_acc)


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        from gear_trt.data import BatchLoader, load_source
        from gear_trt.pipeline.stages import PRESETS

        self.args, self.out = args, Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.out / "rows.jsonl"
        self.done = {json.dumps(r["key"]) for r in self.rows()}
        self.preset = PRESETS["quick"]
        train = load_source(args.data, "train")
        test = load_source(args.data, "test")
        self.train_set = train.per_class(args.train_per_class, seed=0) if args.train_per_class else train
        self.test_set = test.per_class(args.test_per_class, seed=0) if args.test_per_class else test
        self.test_loader = BatchLoader(self.test_set, 500, train=False)

    def rows(self) -> list[dict[str, Any]]:
        if not self.rows_path.exists():
            return []
        return [json.loads(line) for line in self.rows_path.read_text().splitlines() if line.strip()]

    def add(self, row: dict[str, Any]) -> None:
        with self.rows_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def loader(self, seed: int, augmented: bool = False, epoch: int = 0):
        from gear_trt.data import BatchLoader
        from gear_trt.data.era import ERA, ERAConfig

        loader = BatchLoader(self.train_set, 128, train=True, seed=seed, augment=ERA(ERAConfig(width=1, depth=3, severity=3)) if augmented else None)
        loader.set_epoch(epoch)
        return loader

    def train(self, model, spec, epochs: int, seed: int, augmented: bool = False):
        """One training stage as the pipeline runs it (gear_trt.pipeline.stages._train_stage)."""
        from gear_trt.train.loop import TrainConfig, train

        config = TrainConfig(epochs=epochs, batch_size=128, lr=0.1, seed=seed, device="cpu", warmup_epochs=min(1.0, epochs / 2))
        with tempfile.TemporaryDirectory() as tmp:
            result = train(model, self.loader(seed, augmented), config, ckpt_path=Path(tmp) / "stage.pt", spec=spec, quiet=True)
        return result.model, sum(r["seconds"] for r in result.history) / epochs

    def run(self) -> None:
        from gear_trt.grow import GrowthConfig, grow
        from gear_trt.grow.budget import growth_ratio_budget
        from gear_trt.models import backbone_spec, build_model
        from gear_trt.grow.osg import reachable_new_ratio
        from gear_trt.pipeline.stages import PAPER_GROWTH_RATIO, GrowOptions

        a = self.args
        for seed in a.seeds:  # seed-major: a study cut short still covers every family
            for family in a.families:
                plan = [(g, PAPER_GROWTH_RATIO[family], True) for g in a.growers]
                plan += [(a.growers[0], r, False) for r in a.ratios if r != PAPER_GROWTH_RATIO[family]]
                todo = [p for p in plan if json.dumps([family, seed, p[0], p[1]]) not in self.done]
                if not todo:
                    continue
                import torch

                torch.manual_seed(seed)
                spec = backbone_spec(family)
                backbone, epoch_s = self.train(build_model(spec), spec, self.preset.backbone_epochs, seed)
                ce0, acc0 = _ce_acc(backbone, self.test_loader)
                for grower, ratio, robust in todo:
                    budget = growth_ratio_budget(spec, ratio)
                    opts = GrowOptions(arch=family, grower=grower)
                    loader = self.loader(seed, epoch=10_000)
                    config = GrowthConfig(grower=grower, seed=seed, new_ratio=reachable_new_ratio(spec, budget, grower, opts.new_ratio),
                                          max_batches=max(1, math.ceil(opts.growth_pass * len(loader))))
                    t0 = time.perf_counter()
                    res = grow(copy.deepcopy(backbone), spec, lambda: loader, budget, config)
                    grow_s = time.perf_counter() - t0
                    grown = build_model(res.spec)
                    grown.load_state_dict(res.state_dict)
                    ce1, acc1 = _ce_acc(grown, self.test_loader)
                    grown, _ = self.train(grown, res.spec, self.preset.grown_epochs, seed)
                    ce2, acc2 = _ce_acc(grown, self.test_loader)
                    row = {"key": [family, seed, grower, ratio], "family": family, "seed": seed, "grower": grower, "ratio": ratio,
                           "params": sum(p.numel() for p in grown.parameters()), "backbone": [ce0, acc0], "after_growth": [ce1, acc1],
                           "after_grown": [ce2, acc2], "growth_epochs": grow_s / epoch_s, "growth_s": grow_s, "backbone_epoch_s": epoch_s,
                           "holdout": res.holdout, "kept_nonpositive": res.kept_nonpositive}
                    if robust:
                        robust_net, _ = self.train(grown, res.spec, self.preset.robust_epochs, seed, augmented=True)
                        row["after_robust"] = list(_ce_acc(robust_net, self.test_loader))
                        row["robust_acc"] = _robust(robust_net, self.test_set, seed, self.preset.robust_images)
                    self.add(row)


def _ms(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    v = np.array(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| family | grower | n | backbone CE / acc % | right after growth CE / acc % | after grown stage CE / acc % "
             "| after robust stage CE / acc % | robust acc % | growth, backbone epochs |", "|---|---|---:|---|---|---|---|---:|---:|"]
    keys = sorted({(r["family"], r["grower"], r["ratio"]) for r in rows if "after_robust" in r})
    for fam, grower, ratio in keys:
        rs = [r for r in rows if (r["family"], r["grower"], r["ratio"]) == (fam, grower, ratio) and "after_robust" in r]
        cell = lambda k: f"{_ms([r[k][0] for r in rs], 1, 3)} / {_ms([r[k][1] for r in rs], 100, 1)}"  # noqa: E731
        lines.append(f"| {fam} | {grower} | {len(rs)} | {cell('backbone')} | {cell('after_growth')} | {cell('after_grown')} | "
                     f"{cell('after_robust')} | {_ms([r['robust_acc'] for r in rs], 100, 1)} | {_ms([r['growth_epochs'] for r in rs])} |")
    sens = sorted({(r["family"], r["grower"], r["ratio"]) for r in rows})
    if len({k[2] for k in sens}) > len({k[0] for k in sens}):
        lines += ["", "| family | grower | growth ratio | n | params | after grown stage CE / acc % |", "|---|---|---:|---:|---:|---|"]
        for fam, grower, ratio in sens:
            rs = [r for r in rows if (r["family"], r["grower"], r["ratio"]) == (fam, grower, ratio)]
            lines.append(f"| {fam} | {grower} | {ratio} | {len(rs)} | {int(np.mean([r['params'] for r in rs])):,} | "
                         f"{_ms([r['after_grown'][0] for r in rs], 1, 3)} / {_ms([r['after_grown'][1] for r in rs], 100, 1)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="builtin")
    ap.add_argument("--train-per-class", type=int)
    ap.add_argument("--test-per-class", type=int)
    ap.add_argument("--families", nargs="+", default=["vgg19", "mobilenet_v1", "resnet18"])
    ap.add_argument("--growers", nargs="+", default=["firefly", "gradmax", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--ratios", nargs="*", type=float, default=[], help="growth-ratio sensitivity for the first grower")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a loaded machine)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table-only", action="store_true", help="print the table of OUT/rows.jsonl and exit")
    args = ap.parse_args()
    if not args.table_only:
        import torch

        torch.set_num_threads(args.threads)
        Study(args).run()
    rows = [json.loads(line) for line in (Path(args.out) / "rows.jsonl").read_text().splitlines() if line.strip()]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
