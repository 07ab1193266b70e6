#!/usr/bin/env python
"""One prepared GPU check: what a short lease of one NVIDIA GPU can tell us that the CPU cannot.

    python tools/device_check.py --pack-data .device-data      # here, once: a CIFAR-10 JPEG subset to carry
    python tools/device_check.py --out OUT                     # on the GPU machine: <= 8 minutes
    python tools/device_check.py --out OUT --dry-run           # the same steps, tiny, on the CPU (CI)

Needs torch, torchvision, numpy, onnx and pillow (pytest for the GPU-marked tests); no network, no
TensorRT, and gear-trt need not be installed: it runs from this repository tree. Writes
OUT/device_check.json (schema SCHEMA) and OUT/device_check.md, plus OUT/gpu-tests.xml.

Steps (each in its own forked process with a time box; a failing or overrunning step records its
error and the next one still runs; see STEPS for each one's cap):
  environment          versions, GPU name / capability / memory, driver, TF32 defaults
  gpu_tests            `pytest -m gpu` over tests/
  parity_era           ERA on CPU vs GPU, same generator       (mean |diff| < 1e-4, as tests/test_era.py)
  parity_corruptions   the 19 corruptions on CPU vs GPU, sev 3 (mean |diff| < 0.05 and < 1% of pixels
                                                                off by > 1 level, as tests/test_corruptions.py)
  parity_amp_training  the real trainer, 8 steps of a VGG-19 backbone: GPU fp32 / fp16+GradScaler / bf16
                       against the CPU's fp32 (first-step loss within TOLERANCES, fp32's whole trajectory,
                       AMP runs learning), skipped steps, and resume on the GPU
  throughput_growth    training images/s per family, backbone and grown widths, fp32 NCHW vs AMP fp16 +
                       channels_last; one whole One-Shot Growth per grower via gear_trt.grow.grow()
  paper_gearnn2        GEARnn-2 on the carried CIFAR-10 subset, the paper schedule scaled by --epochs-scale
  paper_small_aug      Small(D_aug) at GEARnn-2's final widths, same schedule scaling
--dry-run runs every step on the CPU (the "GPU" side is the CPU too), tiny, and writes the same schema.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from the tree: the lent machine has no gear-trt installed

SCHEMA = "gear-trt-device-check/1"
DEFAULT_BUDGET_S = 450.0  # the whole check, start to finish (the lease allows 8 minutes per call)
DEFAULT_DATA = ROOT / ".device-data" / "cifar10-subset.zip"  # what --pack-data writes by default
SHARED_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
FAMILIES = ("vgg19", "mobilenet_v1", "resnet18")
GROWTH_TIMED = ("gradmax", "firefly")  # the default grower and the paper's, each timed as one whole growth
# Stated tolerances. TF32 is on for cuDNN convolutions by default on Ampere and later, so even the
# GPU's fp32 differs from the CPU's in the 4th digit; the figures measured are recorded beside them.
TOLERANCES = {
    "era_mean_abs": 1e-4,
    "corruption_mean_abs_levels": 0.05,
    "corruption_fraction_off_by_more_than_1": 0.01,
    # the first step's loss (same weights, same batch: forward precision only), per AMP mode
    "train_first_loss_rel": {"off": 5e-3, "fp16": 1e-2, "bf16": 3e-2},
    # fp32 on the GPU follows the CPU's fp32 trajectory (AMP runs cannot: fp16 skips its first steps
    # while the loss scale backs off from 65536, so they are checked for learning instead)
    "train_fp32_trajectory_loss_rel": 1e-2,
}


@dataclasses.dataclass(frozen=True)
class Context:
    device: str  # "cuda", or "cpu" in a dry run
    dry_run: bool
    data: str
    work: Path  # scratch (caches, run directories): not returned
    out: Path  # what comes back
    epochs_scale: float
    seed: int = 0
    limit_s: float = 0.0  # the running step's time box


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    cap_s: float  # its time box on the GPU
    run: Callable[[Context], dict[str, Any]]
    dry_cap_s: float = 60.0


# --- steps -------------------------------------------------------------------------------------------

def step_environment(ctx: Context) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    def version(name: str) -> Optional[str]:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "packages": {n: version(n) for n in ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "pillow", "pytest", "tensorrt")},
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "device": ctx.device,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "data": ctx.data, "data_bytes": Path(ctx.data).stat().st_size if Path(ctx.data).is_file() else None,
        "tree": _tree_identity(),
    }
    if ctx.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count, "bf16": torch.cuda.is_bf16_supported()}
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=15)
            env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["nvidia_smi"] = f"unavailable: {exc}"
    return env


def _tree_identity() -> dict[str, Any]:
    """The commit the tree came from, where it is a git checkout (the lent machine gets a copy)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            return {"commit": head.stdout.strip(), "modified_files": len(dirty.stdout.splitlines())}
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"commit": None}


def step_gpu_tests(ctx: Context) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    xml = ctx.out / "gpu-tests.xml"
    targets = ["tests/test_train.py"] if ctx.dry_run else ["tests"]  # the dry run proves the plumbing only
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rA",
           "--continue-on-collection-errors", f"--junitxml={xml}", *targets]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "GEAR_TRT_CACHE": str(ctx.work / "cache"), "GEAR_TRT_HOME": str(ctx.work / "home"),
           **({"OMP_NUM_THREADS": "1"} if ctx.dry_run else {})}
    timeout = max(5.0, ctx.limit_s - 5)  # pytest ends before the step's box does (a killed step would orphan it)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True)
        code, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        code, tail = None, f"pytest ran past {timeout:.0f} s\n" + str(exc.stdout or "")[-2000:]
    result: dict[str, Any] = {"command": " ".join(cmd[1:]), "exit_code": code, "seconds": round(time.perf_counter() - t0, 1), "output_tail": tail}
    if xml.is_file():
        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        cases = []
        for case in (suite.iter("testcase") if suite is not None else []):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome, message = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag], (node.get("message") or "").splitlines()[0:1]
                    message = message[0][:200] if message else ""
                    break
            cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "message": message})
        result["cases"] = cases
        counts = result["counts"] = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
        # A collection error (a test module needing a package the machine lacks) shows as an error case.
        result["pass"] = counts["failed"] == 0 and counts["error"] == 0 and (ctx.dry_run or counts["passed"] > 0)
    else:
        result["pass"] = False
    return result


def _test_images(ctx: Context, n: int) -> Any:
    """n real CIFAR-10 test images (uint8 NHWC) from the built-in subset."""
    from gear_trt.data import load_source

    return load_source("builtin", "test", progress=False).images[:n].cpu()


def step_parity_era(ctx: Context) -> dict[str, Any]:
    import torch

    from gear_trt.data.era import ERA, ERAConfig

    n = 16 if ctx.dry_run else 512
    x = _test_images(ctx, n).permute(0, 3, 1, 2).float().div(255)
    era = ERA(ERAConfig(width=3, jsd=True))
    cpu = era(x, torch.Generator().manual_seed(2))
    dev = era(x.to(ctx.device), torch.Generator().manual_seed(2))
    diffs = [float((a - b.cpu()).abs().mean()) for a, b in zip(cpu, dev)]
    maxes = [float((a - b.cpu()).abs().max()) for a, b in zip(cpu, dev)]
    # ERA's speed on the device, the paper's (W, D) = (1, 3): images/s of one augmented view
    one = ERA(ERAConfig())
    xd = x.to(ctx.device)
    one(xd, torch.Generator().manual_seed(0))
    _sync(ctx)
    t0 = time.perf_counter()
    reps = 2 if ctx.dry_run else 10
    for r in range(reps):
        one(xd, torch.Generator().manual_seed(r))
    _sync(ctx)
    seconds = time.perf_counter() - t0
    tol = TOLERANCES["era_mean_abs"]
    return {"images": n, "views": ["clean", "augmented_1", "augmented_2"], "mean_abs": diffs, "max_abs": maxes,
            "tolerance_mean_abs": tol, "pass": all(d < tol for d in diffs), "era_images_per_s": round(n * reps / seconds, 1)}


def step_parity_corruptions(ctx: Context) -> dict[str, Any]:

    from gear_trt.corruptions import ALL_CORRUPTIONS, corrupt

    n = 2 if ctx.dry_run else 32
    names = ALL_CORRUPTIONS[:3] if ctx.dry_run else ALL_CORRUPTIONS
    images = _test_images(ctx, n)
    rows, tol_mean, tol_frac = {}, TOLERANCES["corruption_mean_abs_levels"], TOLERANCES["corruption_fraction_off_by_more_than_1"]
    for name in names:
        cpu = corrupt(images, name, 3).int()
        corrupt(images[:1].to(ctx.device), name, 3)  # warm-up (kernels, caches)
        _sync(ctx)
        t0 = time.perf_counter()
        dev = corrupt(images.to(ctx.device), name, 3)
        _sync(ctx)
        seconds = time.perf_counter() - t0
        diff = (dev.cpu().int() - cpu).abs()
        mean, frac = float(diff.float().mean()), float((diff > 1).float().mean())
        rows[name] = {"mean_abs": mean, "fraction_off_by_more_than_1": frac, "max_abs": int(diff.max()),
                      "device_ms_per_image": round(1000 * seconds / n, 3), "pass": mean < tol_mean and frac < tol_frac}
        del dev
    return {"images": n, "severity": 3, "tolerance": {"mean_abs": tol_mean, "fraction_off_by_more_than_1": tol_frac},
            "corruptions": rows, "pass": all(r["pass"] for r in rows.values()), "dtype_ok": True}


def _sync(ctx: Context) -> None:
    import torch

    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()


class _ListLoader:
    """A fixed list of (x, y) batches with the BatchLoader protocol the trainer uses."""

    def __init__(self, batches: list[tuple[Any, Any]]) -> None:
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def step_parity_amp_training(ctx: Context) -> dict[str, Any]:
    import torch

    from gear_trt.artifacts.checkpoint import load_checkpoint
    from gear_trt.data import load_source, normalize
    from gear_trt.models import backbone_spec, build_model, scaled_spec
    from gear_trt.train import TrainConfig, train
    from gear_trt.train.loop import CrossEntropy

    batches, batch = (2, 16) if ctx.dry_run else (4, 64)  # 2 epochs of `batches` steps
    spec = scaled_spec("vgg19", 0.05) if ctx.dry_run else backbone_spec("vgg19")
    ds = load_source("builtin", "train", progress=False)
    x, y = normalize(ds.images[: batches * batch]), ds.labels[: batches * batch]
    data = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(batches)]
    torch.manual_seed(ctx.seed)
    init = build_model(spec).state_dict()
    bf16_ok = not ctx.device.startswith("cuda") or torch.cuda.is_bf16_supported()
    runs = [("cpu", "off", "off"), (ctx.device, "off", "off"), (ctx.device, "fp16", "auto")] + ([(ctx.device, "bf16", "auto")] if bf16_ok else [])

    def one(device: str, amp: str, channels_last: str, name: str, **kw: Any) -> tuple[list[float], dict[str, Any], Any]:
        losses: list[float] = []

        class Recording(CrossEntropy):
            def __call__(self, model, xb, yb):  # type: ignore[no-untyped-def]
                loss, logits = super().__call__(model, xb, yb)
                losses.append(float(loss.detach()))
                return loss, logits

        model = build_model(spec)
        model.load_state_dict(init)
        cfg = TrainConfig(epochs=2, lr=0.02, seed=ctx.seed, device=device, amp=amp, channels_last=channels_last, warmup_epochs=0.0)
        result = train(model, _ListLoader(data), cfg, ckpt_path=ctx.work / f"amp-{name}.pt", spec=spec, stage="amp", quiet=True,
                       loss_fn=Recording(), **kw)
        weights = {k: v.detach().float().cpu() for k, v in result.model.state_dict().items() if v.is_floating_point()}
        return losses, weights, load_checkpoint(ctx.work / f"amp-{name}.pt")

    ref_losses, ref_w, _ = one(*runs[0], name="cpu-fp32")
    rows = []
    for device, amp, cl in runs[1:]:
        name = f"{device}-{amp}"
        losses, w, payload = one(device, amp, cl, name)
        rel = [abs(a - b) / max(abs(b), 1e-8) for a, b in zip(losses, ref_losses)]
        num = sum(float((w[k] - ref_w[k]).pow(2).sum()) for k in ref_w)
        den = sum(float(ref_w[k].pow(2).sum()) for k in ref_w)
        tol = TOLERANCES["train_first_loss_rel"][amp]
        scaler = payload.get("scaler") or None
        row = {"device": device, "amp": payload["amp"], "channels_last": payload.get("channels_last"), "losses": losses,
               "first_loss_rel_diff": rel[0], "tolerance_first_loss_rel": tol, "loss_rel_diff_max": max(rel),
               "weights_rel_l2_diff": math.sqrt(num / den), "scaler": scaler,
               "skipped_steps": round(math.log2(65536.0 / scaler["scale"])) if scaler else 0,  # each skip halves the scale
               "learns": all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]}
        row["pass"] = rel[0] < tol and row["learns"]
        if amp == "off":
            row["tolerance_trajectory_loss_rel"] = TOLERANCES["train_fp32_trajectory_loss_rel"]
            row["pass"] = row["pass"] and max(rel) < row["tolerance_trajectory_loss_rel"]
        rows.append(row)

    # Resume on the device: 1 epoch, stop, resume; compared with the uninterrupted fp16 run above.
    class Stop(Exception):
        pass

    def stop(record: dict[str, Any]) -> None:
        raise Stop

    try:
        one(ctx.device, "fp16", "auto", "resume", on_epoch_end=stop)
    except Stop:
        pass
    _, resumed_w, _ = one(ctx.device, "fp16", "auto", "resume")
    _, full_w, _ = one(ctx.device, "fp16", "auto", "resume-ref")
    max_diff = max(float((resumed_w[k] - full_w[k]).abs().max()) for k in full_w)
    return {"model": spec.family, "params": sum(int(v.numel()) for v in init.values()), "steps": 2 * batches, "batch": batch,
            "cpu_fp32_losses": ref_losses, "runs": rows, "bf16_supported": bf16_ok,
            "resume_on_device": {"amp": "fp16", "max_abs_weight_diff_vs_uninterrupted": max_diff, "bit_identical": max_diff == 0.0},
            "pass": all(r["pass"] for r in rows)}


def step_throughput_growth(ctx: Context) -> dict[str, Any]:
    import torch

    from gear_trt.grow import GrowthConfig, grow
    from gear_trt.grow.osg import reachable_new_ratio
    from gear_trt.grow.budget import growth_ratio_budget
    from gear_trt.models import backbone_spec, build_model, count_params
    from gear_trt.pipeline.stages import PAPER_GROWTH_RATIO

    dev = torch.device(ctx.device)
    batch, warm, steps = (8, 1, 2) if ctx.dry_run else (128, 3, 20)
    # candidate batches of each timed growth: gradmax's default decomposition, a firefly pass of 12
    gradmax_batches, firefly_batches = (2, 2) if ctx.dry_run else (GrowthConfig().gradmax_batches, 12)
    families = FAMILIES[:1] if ctx.dry_run else FAMILIES
    g = torch.Generator().manual_seed(ctx.seed)
    xs = [torch.randn(batch, 3, 32, 32, generator=g) for _ in range(2 + max(gradmax_batches, firefly_batches))]
    ys = [torch.randint(0, 10, (batch,), generator=g) for _ in range(2 + max(gradmax_batches, firefly_batches))]

    def train_speed(spec: Any, amp: bool) -> dict[str, Any]:
        torch.manual_seed(ctx.seed)
        model = build_model(spec).to(dev)
        fmt = torch.channels_last if amp else torch.contiguous_format
        model = model.to(memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler(dev.type, enabled=amp)
        x, y = xs[0].to(dev).contiguous(memory_format=fmt), ys[0].to(dev)

        def step() -> None:
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        for _ in range(warm):
            step()
        _sync(ctx)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(ctx)
        s = (time.perf_counter() - t0) / steps
        return {"step_s": s, "images_per_s": batch / s, "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None}

    def growth(spec: Any, grower: str) -> tuple[float, Any, Optional[float]]:
        """One whole growth with `grower` at its default batch count (plus one held out, one calibration batch)."""
        torch.manual_seed(ctx.seed)
        model = build_model(spec).to(dev)
        batches = [(xs[i].to(dev), ys[i].to(dev)) for i in range(len(xs))]
        # enough new-neuron candidates for one shot to reach the paper's ratio (as tools/bench_train.py)
        budget = growth_ratio_budget(spec, PAPER_GROWTH_RATIO[spec.family])
        cfg = GrowthConfig(grower=grower, new_ratio=reachable_new_ratio(spec, budget, grower), holdout_batches=1,
                           calibrate_batches=1, max_batches=firefly_batches, gradmax_batches=gradmax_batches, seed=ctx.seed)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(ctx)
        t0 = time.perf_counter()
        result = grow(model, spec, lambda: iter(batches), budget, cfg)
        _sync(ctx)
        peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
        return time.perf_counter() - t0, result, peak

    rows = {}
    for family in families:
        spec = backbone_spec(family)
        row: dict[str, Any] = {"growth_ratio": PAPER_GROWTH_RATIO[family], "backbone_params": count_params(spec)}
        row["backbone"] = {"fp32": train_speed(spec, False), "amp_fp16_channels_last": train_speed(spec, True)}
        row["growth"] = {}
        for grower in GROWTH_TIMED:
            growth(spec, grower)  # warm-up: cuDNN picks kernels for the expanded net
            seconds, result, peak = growth(spec, grower)
            row["growth"][grower] = {"seconds": seconds, "peak_mib": peak,
                                     "candidate_batches": gradmax_batches if grower == "gradmax" else firefly_batches,
                                     "over_backbone_fp32_step": seconds / row["backbone"]["fp32"]["step_s"]}
        grown = result.spec
        row["grown_params"] = count_params(grown)
        row["grown_widths"] = list(grown.widths)
        row["grown"] = {"fp32": train_speed(grown, False), "amp_fp16_channels_last": train_speed(grown, True)}
        rows[family] = row
    return {"batch": batch, "timed_steps": steps, "data": "random tensors (speed only)", "families": rows}


def _pipeline(ctx: Context, name: str, pipeline: str, **extra: Any) -> dict[str, Any]:
    if not ctx.dry_run:  # the decoded subset, shared by both runs (a dry run keeps the usual cache)
        os.environ["GEAR_TRT_CACHE"] = str(ctx.work / "cache")
    os.environ["TQDM_DISABLE"] = "1"  # per-batch bars would bury the log; each epoch still prints a line
    from gear_trt.pipeline.rundir import RunDir
    from gear_trt.pipeline.stages import GrowOptions, run_pipeline

    opts = {"pipeline": pipeline, "arch": "vgg19", "data": ctx.data, "seed": ctx.seed, "device": ctx.device}
    if ctx.dry_run:
        opts.update(preset="quick", train_per_class=2, test_per_class=1, epochs_scale=0.01, robust_eval="none", batch_size=8)
    else:
        # 250 test images per corruption sweep (15 corruptions x 5 severities) at each of the stages
        opts.update(preset="paper", epochs_scale=ctx.epochs_scale, robust_eval="250")
    opts.update(extra)
    path = ctx.work / "runs" / name
    run = RunDir.create(path, "grow", resume=path.exists(), argv=[f"{k}={v}" for k, v in opts.items()])
    t0 = time.perf_counter()
    summary = run_pipeline(run, GrowOptions(**opts).validate(), echo=lambda line: print(f"   {line}", file=sys.stderr, flush=True))
    return {"options": opts, "wall_s": round(time.perf_counter() - t0, 1), **_summary_facts(summary)}


def _summary_facts(summary: dict[str, Any]) -> dict[str, Any]:
    stages = summary.get("stages", [])
    keep = ("name", "params", "epochs", "seconds", "clean_acc", "robust_acc", "widths")
    last = stages[-1] if stages else {}
    return {"stages": [{k: s.get(k) for k in keep} for s in stages], "final_clean_acc": last.get("clean_acc"),
            "final_robust_acc": last.get("robust_acc"), "final_params": last.get("params"),
            "train_seconds": sum(s.get("seconds") or 0 for s in stages)}


def step_paper_gearnn2(ctx: Context) -> dict[str, Any]:
    return _pipeline(ctx, "gearnn2", "gearnn2")


def step_paper_small_aug(ctx: Context) -> dict[str, Any]:
    g2 = ctx.work / "runs" / "gearnn2" / "summary.json"
    if not g2.is_file() or not json.loads(g2.read_text()).get("stages"):
        raise RuntimeError("GEARnn-2 did not finish, so there is no final size to match")
    result = _pipeline(ctx, "small-aug", "small-aug", like=str(g2.parent))
    g2_facts = _summary_facts(json.loads(g2.read_text()))
    if g2_facts["train_seconds"]:
        result["time_over_gearnn2"] = result["train_seconds"] / g2_facts["train_seconds"]
    return result


STEPS = (
    Step("environment", 30, step_environment),
    Step("gpu_tests", 75, step_gpu_tests),
    Step("parity_era", 30, step_parity_era),
    Step("parity_corruptions", 45, step_parity_corruptions),
    Step("parity_amp_training", 45, step_parity_amp_training),
    Step("throughput_growth", 90, step_throughput_growth),
    Step("paper_gearnn2", 110, step_paper_gearnn2),
    Step("paper_small_aug", 90, step_paper_small_aug),
)


# --- running the steps ---------------------------------------------------------------------------------

def _child(step: Step, ctx: Context, result_path: Path) -> None:
    try:
        if ctx.dry_run:  # one thread: on a shared CI machine OpenMP's spinning threads cost 10-40x
            import torch

            torch.set_num_threads(1)
        value = step.run(ctx)
        payload = {"status": "ok", "result": value}
    except BaseException as exc:  # noqa: BLE001 - a step's failure is data
        payload = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
                   "traceback": traceback.format_exc()[-4000:]}
    result_path.write_text(json.dumps(payload, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def run_step(step: Step, ctx: Context, limit: float) -> dict[str, Any]:
    """Run one step in a forked process, at most `limit` seconds; its outcome as data, whatever happens."""
    result_path = ctx.work / f"{step.name}.result.json"
    result_path.unlink(missing_ok=True)
    ctx = dataclasses.replace(ctx, limit_s=limit)
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(step, ctx, result_path), name=step.name)
    t0 = time.perf_counter()
    proc.start()
    proc.join(limit)
    timed_out = proc.is_alive()
    if timed_out:
        proc.kill()
        proc.join(10)
    seconds = round(time.perf_counter() - t0, 2)
    entry: dict[str, Any] = {"status": "timeout" if timed_out else "failed", "seconds": seconds, "limit_s": round(limit, 1),
                             "result": None, "error": None}
    if result_path.is_file():
        entry.update(json.loads(result_path.read_text()))
    elif timed_out:
        entry["error"] = f"ran past its time box of {limit:.0f} s and was stopped"
    else:
        entry["error"] = f"the step's process ended with exit code {proc.exitcode} and no result"
    if timed_out and step.name.startswith("paper_"):  # a killed pipeline still leaves its finished stages
        summary = ctx.work / "runs" / step.name.split("_", 1)[1].replace("_", "-") / "summary.json"
        if summary.is_file():
            entry["result"] = {"partial": True, **_summary_facts(json.loads(summary.read_text()))}
    return entry


def run_all(ctx: Context, steps: tuple[Step, ...], budget_s: float, limits: dict[str, float]) -> dict[str, Any]:
    started = time.perf_counter()
    deadline = started + budget_s
    report: dict[str, Any] = {"schema": SCHEMA, "dry_run": ctx.dry_run, "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "budget_s": budget_s, "tolerances": TOLERANCES, "epochs_scale": ctx.epochs_scale, "steps": {}}
    for i, step in enumerate(steps):
        cap = limits.get(step.name, step.dry_cap_s if ctx.dry_run else step.cap_s)
        left = deadline - time.perf_counter()
        limit = min(cap, left)
        print(f"[device_check] {step.name}: up to {limit:.0f} s", file=sys.stderr, flush=True)
        if left < 1:
            report["steps"][step.name] = {"status": "skipped", "seconds": 0.0, "limit_s": 0.0, "result": None,
                                          "error": "no time left in the budget"}
            continue
        entry = run_step(step, ctx, limit)
        report["steps"][step.name] = entry
        print(f"[device_check] {step.name}: {entry['status']} in {entry['seconds']:.1f} s"
              + (f" ({entry['error']})" if entry.get("error") else ""), file=sys.stderr, flush=True)
        _write(ctx.out, report, started)  # after every step: a lease cut short still returns what ran
    return _write(ctx.out, report, started)


def _write(out: Path, report: dict[str, Any], started: float) -> dict[str, Any]:
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["checks_failed"] = failed_checks(report)
    text = json.dumps(report, indent=1, default=_jsonable)
    (out / "device_check.json").write_text(text + "\n")
    (out / "device_check.md").write_text(markdown(report))
    return report


def failed_checks(report: dict[str, Any]) -> list[str]:
    """Steps that did not run to the end, and checks that ran outside their tolerance."""
    out = []
    for name, entry in report["steps"].items():
        if entry["status"] != "ok":
            out.append(f"{name}: {entry['status']}")
        elif isinstance(entry.get("result"), dict) and entry["result"].get("pass") is False:
            out.append(f"{name}: outside tolerance")
    return out


# --- the Markdown summary ---------------------------------------------------------------------------

def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    steps = report["steps"]
    env = (steps.get("environment") or {}).get("result") or {}
    gpu = env.get("gpu") or {}
    lines = [f"# gear-trt device check{' (dry run on the CPU)' if report['dry_run'] else ''}", "",
             f"{report['started']}, {report.get('seconds', 0):.0f} s of a {report['budget_s']:.0f} s budget. "
             f"GPU: {gpu.get('name', 'none')} (sm {gpu.get('capability', '-')}, {gpu.get('memory_gib', '-')} GiB); "
             f"torch {env.get('packages', {}).get('torch')}, CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}, "
             f"Python {env.get('python')}; data {env.get('data')}; tree {(env.get('tree') or {}).get('commit')}.", "",
             "| step | status | seconds | limit s | note |", "|---|---|---|---|---|"]
    for name, e in steps.items():
        note = e.get("error") or ("outside tolerance" if isinstance(e.get("result"), dict) and e["result"].get("pass") is False else "")
        lines.append(f"| {name} | {e['status']} | {e['seconds']:.1f} | {e['limit_s']:.0f} | {str(note)[:120]} |")
    lines += ["", f"Checks failed: {', '.join(report.get('checks_failed') or []) or 'none'}."]

    def result(name: str) -> dict[str, Any]:
        return (steps.get(name) or {}).get("result") or {}

    r = result("gpu_tests")
    if r:
        lines += ["", "## GPU-marked tests", "", f"`{r.get('command')}`: exit {r.get('exit_code')}, {r.get('counts')}"]
        lines += [f"- {c['outcome']}: {c['test']} {c['message']}" for c in r.get("cases", []) if c["outcome"] != "passed"]
    if any(result(n) for n in ("parity_era", "parity_corruptions", "parity_amp_training")):
        lines += ["", "## CPU vs GPU parity", "", "| what | measured | tolerance | pass |", "|---|---|---|---|"]
    r = result("parity_era")
    if r:
        lines += [f"| ERA views, mean abs diff ({r['images']} images) | {', '.join(_f(d) for d in r['mean_abs'])} | < {r['tolerance_mean_abs']} | {r['pass']} |"]
    r = result("parity_corruptions")
    if r:
        worst = max(r["corruptions"].items(), key=lambda kv: kv[1]["mean_abs"])
        lines.append(f"| corruptions sev 3, worst mean abs diff ({worst[0]}) | {_f(worst[1]['mean_abs'])} levels, "
                     f"{_f(worst[1]['fraction_off_by_more_than_1'])} off by >1 | < {r['tolerance']['mean_abs']}, < {r['tolerance']['fraction_off_by_more_than_1']} | {r['pass']} |")
    r = result("parity_amp_training")
    if r:
        for run in r["runs"]:
            trajectory = (f"; all {r['steps']} steps {_f(run['loss_rel_diff_max'])} (< {run['tolerance_trajectory_loss_rel']})"
                          if "tolerance_trajectory_loss_rel" in run else f"; {run['skipped_steps']} skipped steps, learns: {run['learns']}")
            lines.append(f"| trainer {run['device']} amp={run['amp']} vs CPU fp32: first-step loss rel diff | "
                         f"{_f(run['first_loss_rel_diff'])}{trajectory} | < {run['tolerance_first_loss_rel']} | {run['pass']} |")
        res = r["resume_on_device"]
        lines.append(f"| resume on the device (fp16): max abs weight diff vs uninterrupted | {_f(res['max_abs_weight_diff_vs_uninterrupted'])} | (informative) | |")
    r = result("throughput_growth")
    if r:
        lines += ["", f"## Training images/s (batch {r['batch']}) and growth cost", "",
                  "| family | params backbone -> grown | backbone fp32 | backbone AMP+NHWC | grown fp32 | grown AMP+NHWC | "
                  + " | ".join(f"{g} growth s (backbone steps)" for g in GROWTH_TIMED) + " |",
                  "|---|---|---|---|---|---|" + "---|" * len(GROWTH_TIMED)]
        for fam, row in r["families"].items():
            b, g = row["backbone"], row["grown"]
            lines.append(f"| {fam} | {row['backbone_params']:,} -> {row['grown_params']:,} | {b['fp32']['images_per_s']:.0f} | "
                         f"{b['amp_fp16_channels_last']['images_per_s']:.0f} | {g['fp32']['images_per_s']:.0f} | {g['amp_fp16_channels_last']['images_per_s']:.0f} | "
                         + " | ".join(f"{_f(row['growth'][g]['seconds'])} ({_f(row['growth'][g]['over_backbone_fp32_step'])})" for g in GROWTH_TIMED) + " |")
    rows = [(label, result(name)) for label, name in (("GEARnn-2", "paper_gearnn2"), ("Small(D_aug)", "paper_small_aug")) if result(name)]
    if rows:
        lines += ["", "## GEARnn-2 vs Small(D_aug), short schedule", "", "| method | params | clean % | robust % | train s | stages |", "|---|---|---|---|---|---|"]
        for label, r in rows:
            pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
            stages = ", ".join(f"{s['name']} {s.get('epochs')}ep" for s in r.get("stages", []))
            lines.append(f"| {label}{' (partial)' if r.get('partial') else ''} | {r.get('final_params') or 0:,} | {pct(r.get('final_clean_acc'))} | "
                         f"{pct(r.get('final_robust_acc'))} | {r.get('train_seconds', 0):.1f} | {stages} |")
        ratio = result("paper_small_aug").get("time_over_gearnn2")
        if ratio:
            lines.append(f"\nSmall(D_aug) / GEARnn-2 training time: {ratio:.2f}x (paper, Jetson: 2.3x).")
    return "\n".join(lines) + "\n"


# --- data to carry -------------------------------------------------------------------------------------

def pack_data(dest: Path, source: Path, train_per_class: int, test_per_class: int) -> Path:
    """A class-balanced subset of an image-folder zip (train/<class>/*, test/<class>/*), reproducibly:
    the first N names per class in sorted order, stored uncompressed (JPEGs do not shrink) with fixed
    timestamps, so two packs of the same source are byte-identical."""
    if not source.is_file():
        raise SystemExit(f"device_check: error: {source} does not exist -- fix: pass --source PATH to a CIFAR-10 JPEG zip")
    per_class: dict[tuple[str, str], list[str]] = {}
    with zipfile.ZipFile(source) as zin:
        for name in sorted(zin.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[0] in ("train", "test") and parts[2]:
                per_class.setdefault((parts[0], parts[1]), []).append(name)
        if not per_class:
            raise SystemExit(f"device_check: error: {source} has no train/<class>/<image> entries -- fix: pass an image-folder zip")
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / "cifar10-subset.zip"
        tmp = out.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zout:
            for (split, cls), names in sorted(per_class.items()):
                for name in names[: train_per_class if split == "train" else test_per_class]:
                    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                    zout.writestr(info, zin.read(name))
        tmp.replace(out)
    counts = {s: sum(min(len(v), train_per_class if s == "train" else test_per_class) for (sp, _), v in per_class.items() if sp == s) for s in ("train", "test")}
    print(f"{out}: {counts['train']} train + {counts['test']} test images, {out.stat().st_size / 1e6:.1f} MB")
    return out


# --- command line --------------------------------------------------------------------------------------

def _cuda_visible() -> bool:
    """Asked in a separate interpreter: CUDA initialised in this process would break the forked steps."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def _fail(message: str, fix: str) -> int:
    print(f"device_check: error: {message} -- fix: {fix}", file=sys.stderr)
    return 2


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for device_check.json / .md (created)")
    ap.add_argument("--dry-run", action="store_true", help="every step tiny on the CPU (CI): same JSON schema")
    ap.add_argument("--data", help=f"image-folder zip for the GEARnn-2 / Small(D_aug) runs (default {DEFAULT_DATA.relative_to(ROOT)} if present, else builtin)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help=f"seconds for the whole check (default {DEFAULT_BUDGET_S:.0f})")
    ap.add_argument("--epochs-scale", type=float, default=0.1, help="paper schedule (40/40/40, baseline 160 epochs) times this (default 0.1)")
    ap.add_argument("--only", help="comma-separated steps to run (default all): " + ", ".join(s.name for s in STEPS))
    ap.add_argument("--limit", action="append", default=[], metavar="STEP=SECONDS", help="override one step's time box")
    ap.add_argument("--pack-data", type=Path, metavar="DIR", help="write DIR/cifar10-subset.zip to carry, then exit")
    ap.add_argument("--source", type=Path, default=SHARED_ZIP, help="full CIFAR-10 JPEG zip that --pack-data reads")
    ap.add_argument("--train-per-class", type=int, default=2500, help="--pack-data: training images per class (default 2500)")
    ap.add_argument("--test-per-class", type=int, default=1000, help="--pack-data: test images per class (default 1000, all)")
    args = ap.parse_args(argv)

    if args.pack_data is not None:
        if args.train_per_class < 1 or args.test_per_class < 1:
            return _fail("--train-per-class and --test-per-class must be >= 1", "pass positive counts")
        pack_data(args.pack_data, args.source, args.train_per_class, args.test_per_class)
        return 0
    if args.out is None:
        return _fail("--out is required", "pass --out DIR (on the lent machine: --out $OUT)")
    names = [s.name for s in STEPS]
    only = [n.strip() for n in args.only.split(",")] if args.only else names
    unknown = [n for n in only if n not in names]
    if unknown:
        return _fail(f"unknown step {unknown[0]!r}", f"choose from {', '.join(names)}")
    limits: dict[str, float] = {}
    for item in args.limit:
        name, _, value = item.partition("=")
        try:
            limits[name] = float(value)
        except ValueError:
            return _fail(f"--limit {item!r} is not STEP=SECONDS", "e.g. --limit paper_gearnn2=150")
        if name not in names:
            return _fail(f"unknown step {name!r} in --limit", f"choose from {', '.join(names)}")
    if not args.epochs_scale > 0 or args.budget <= 0:
        return _fail("--epochs-scale and --budget must be > 0", "e.g. --epochs-scale 0.1 --budget 450")
    data = "builtin" if args.dry_run else (args.data or (str(DEFAULT_DATA) if DEFAULT_DATA.is_file() else "builtin"))
    if data != "builtin" and not Path(data).exists():
        return _fail(f"--data {data} does not exist", "run `python tools/device_check.py --pack-data .device-data` and carry .device-data")
    if not args.dry_run and not _cuda_visible():
        return _fail("torch sees no CUDA GPU", "run on the GPU machine, or pass --dry-run for the CPU rehearsal")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gear-trt-device-check-") as work:
        ctx = Context(device="cpu" if args.dry_run else "cuda", dry_run=args.dry_run, data=data, work=Path(work),
                      out=args.out, epochs_scale=args.epochs_scale)
        import torch  # noqa: F401 - imported once here so every forked step starts with it loaded

        import gear_trt.train  # noqa: F401

        report = run_all(ctx, tuple(s for s in STEPS if s.name in only), args.budget, limits)
    print(f"device_check: {args.out / 'device_check.json'}, {args.out / 'device_check.md'}; failed: {report['checks_failed'] or 'none'}")
    return 1 if report["checks_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
