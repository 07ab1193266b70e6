"""`gear-trt inspect PATH`: what a checkpoint or a run directory holds.

A checkpoint: its spec, a per-group width table (against the full model), parameters and their
bytes at each precision, the training options, metrics and (with --history) every epoch.
A run directory: its stages (summary.json / manifest.json) and the widths of every checkpoint side
by side, which shows how growth distributed the channels. --json prints the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from gear_trt.errors import ArtifactError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="a checkpoint (.pt) or a run directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    p.add_argument("--history", action="store_true", help="also list every epoch (loss, accuracy, lr, time)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    if path.is_dir():
        info = describe_run(path)
    elif path.is_file():
        info = describe_checkpoint(path)
    else:
        raise ArtifactError(f"{path} does not exist", "pass a checkpoint (.pt) or a run directory")
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        print()
    else:
        print(format_run(info, args.history) if info["kind"] == "run" else format_checkpoint(info, args.history))
    return 0


# --- gathering ------------------------------------------------------------------------------------

def describe_checkpoint(path: Path) -> dict[str, Any]:
    from gear_trt.grow.budget import deployed_bytes
    from gear_trt.models import count_params, family, group_names, params_by_group
    from gear_trt.artifacts.checkpoint import checkpoint_spec, load_checkpoint

    payload = load_checkpoint(path)
    spec = checkpoint_spec(payload, path)
    names = group_names(spec)
    full = family(spec.family).full_widths
    per_group, fixed = params_by_group(spec)  # fixed: the layers of a fixed size (the classifier)
    params = count_params(spec)
    stored = sum(int(t.numel()) for k, t in payload["model"].items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    if stored != params:
        raise ArtifactError(f"{path}: its weights hold {stored:,} parameters but its spec describes {params:,}",
                            "re-run the stage that wrote it")
    classes = list(payload.get("classes", []))
    return {
        "kind": "checkpoint", "path": str(path), "format": payload["format"], "stage": payload.get("stage"),
        "epoch": payload.get("epoch"), "epochs": payload.get("epochs"), "complete": payload.get("complete"),
        "spec": spec.to_dict(), "spec_hash": spec.hash, "num_classes": spec.num_classes, "classes": classes,
        "params": params, "param_bytes": deployed_bytes(spec),
        "groups": [{"name": names[i], "width": w, "full": full[i], "ratio": w / full[i], "params": per_group[i]}
                   for i, w in enumerate(spec.widths)],
        "classifier_params": fixed,
        "metrics": _scalars(payload.get("metrics", {})), "config": payload.get("config", {}),
        "history": [_scalars(r) for r in payload.get("history", [])], "extra": _scalars(payload.get("extra", {})),
    }


def describe_run(path: Path) -> dict[str, Any]:
    from gear_trt.pipeline import RunDir

    run = RunDir.open(path)
    summary = run.read_summary()
    manifest = run.read_json(run.manifest_path) or {}
    stages = manifest.get("stages", {})
    ordered = [p for _, p in run.stage_checkpoints()]  # the pipeline's order first, then any other checkpoint
    ordered += sorted(p for p in run.checkpoints.glob("*.pt") if p not in ordered) if run.checkpoints.is_dir() else []
    checkpoints, unreadable = [], {}
    for p in ordered:
        try:
            checkpoints.append(describe_checkpoint(p))
        except ArtifactError as exc:  # one bad file must not hide the rest of the run
            unreadable[run.rel(p)] = exc.message
    return {
        "kind": "run", "path": str(run.path), "summary": summary,
        "created": manifest.get("created"), "environment": manifest.get("environment", {}),
        "invocations": manifest.get("invocations", []),
        "stages": {name: {k: rec.get(k) for k in ("status", "seconds", "metrics", "error", "artifacts")}
                   for name, rec in stages.items()},
        "checkpoints": checkpoints, "unreadable": unreadable,
    }


def _scalars(d: Any) -> Any:
    """JSON-friendly copy of checkpoint values (tensors become lists)."""
    if isinstance(d, dict):
        return {str(k): _scalars(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_scalars(v) for v in d]
    if hasattr(d, "tolist"):
        return d.tolist()
    return d


# --- formatting -----------------------------------------------------------------------------------

def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pct(v: Optional[float]) -> Optional[str]:
    return None if v is None else f"{100 * v:.2f}%"


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def format_checkpoint(info: dict[str, Any], history: bool = False) -> str:
    spec = info["spec"]
    status = "complete" if info.get("complete") else f"incomplete ({info.get('epoch')}/{info.get('epochs')} epochs)"
    if info.get("epoch") is None:
        status = "-"
    pb = info["param_bytes"]
    lines = [
        f"checkpoint  {info['path']}",
        f"stage       {info.get('stage') or '-'}  [{status}]",
        f"model       {spec['family']}  spec {info['spec_hash']}  input {spec['in_channels']}x{spec['input_size']}x{spec['input_size']}  "
        f"{info['num_classes']} classes",
        f"parameters  {info['params']:,}  (deployed, BatchNorm folded: fp32 {_mb(pb['fp32'])}, fp16 {_mb(pb['fp16'])}, int8 {_mb(pb['int8'])})",
    ]
    m = info.get("metrics") or {}
    shown = [f"{k} {_pct(m[k])}" for k in ("test_acc", "probe_clean_acc", "robust_probe_acc", "train_acc", "robust_acc") if m.get(k) is not None]
    if m.get("loss") is not None:
        shown.append(f"loss {m['loss']:.4f}")
    if m.get("seconds_total") is not None:
        shown.append(f"{m['seconds_total']:.1f} s training")
    if shown:
        lines.append("metrics     " + ", ".join(shown))
    c = info.get("config") or {}
    if c:
        lines.append(f"training    {c.get('epochs')} epochs, batch {c.get('batch_size')}, SGD lr {c.get('lr')} "
                     f"momentum {c.get('momentum')}{' nesterov' if c.get('nesterov') else ''}, wd {c.get('weight_decay')}, "
                     f"{c.get('schedule')} schedule, label smoothing {c.get('label_smoothing')}, seed {c.get('seed')}")
    rows = [[g["name"], g["width"], g["full"], f"{100 * g['ratio']:.1f}%", f"{g['params']:,}"] for g in info["groups"]]
    rows.append(["classifier", info["num_classes"], "-", "-", f"{info['classifier_params']:,}"])
    lines += ["", _table(["group", "width", "full", "of full", "params"], rows)]
    if history and info.get("history"):
        lines += ["", _history_table(info["history"])]
    return "\n".join(lines)


def _history_table(history: list[dict[str, Any]]) -> str:
    rows = [[r.get("epoch"), f"{r['loss']:.4f}" if r.get("loss") is not None else None, _pct(r.get("train_acc")),
             _pct(r.get("test_acc", r.get("probe_clean_acc"))), _pct(r.get("robust_probe_acc")),
             f"{r['lr']:.5g}" if r.get("lr") is not None else None,
             f"{r['seconds']:.1f}" if r.get("seconds") is not None else None,
             f"{r['images_per_s']:.0f}" if r.get("images_per_s") is not None else None] for r in history]
    # test acc: the whole test set, or the probe's clean images when the run scores a probe each epoch
    return _table(["epoch", "loss", "train acc", "test acc", "robust (probe)", "lr", "seconds", "img/s"], rows)


def format_run(info: dict[str, Any], history: bool = False) -> str:
    lines = [f"run         {info['path']}"]
    if info.get("created"):
        lines.append(f"created     {info['created']}")
    env = info.get("environment") or {}
    if env:
        keys = ("gear_trt", "python", "torch", "onnxruntime", "tensorrt", "cuda_device", "l4t")
        lines.append("environment " + ", ".join(f"{k} {env[k]}" for k in keys if env.get(k)))
    summary = info.get("summary") or {}
    if summary:
        lines.append("pipeline    " + ", ".join(f"{k} {summary.get(k)}" for k in ("pipeline", "arch", "data", "seed") if summary.get(k) is not None))
    stages = {st.get("name"): st for st in summary.get("stages", [])}
    names = list(stages) + [n for n in info["stages"] if n not in stages]
    if names:
        rows = []
        for name in names:
            st, rec = stages.get(name, {}), info["stages"].get(name, {})
            seconds = st.get("seconds") if st.get("seconds") is not None else rec.get("seconds")
            rows.append([name, rec.get("status") or ("done" if st else None), st.get("kind"), st.get("epochs"),
                         f"{st['params']:,}" if st.get("params") is not None else None,
                         _pct(st.get("clean_acc")), _pct(st.get("robust_acc")),
                         f"{seconds:.1f}" if seconds is not None else None])
        lines += ["", _table(["stage", "status", "kind", "epochs", "params", "clean acc", "robust acc", "seconds"], rows)]
    for name, rec in info["stages"].items():
        if rec.get("error"):
            lines.append(f"  {name}: {rec['status']}: {rec['error']}")
    ckpts = info["checkpoints"]
    if ckpts:
        headers = ["group"] + [Path(c["path"]).stem for c in ckpts] + ["full"]
        first = ckpts[0]
        same_family = all(c["spec"]["family"] == first["spec"]["family"] for c in ckpts)
        if same_family:
            rows = [[g["name"]] + [c["groups"][i]["width"] for c in ckpts] + [g["full"]] for i, g in enumerate(first["groups"])]
            rows.append(["params"] + [f"{c['params']:,}" for c in ckpts] + ["-"])
            lines += ["", f"widths ({first['spec']['family']})", _table(headers, rows)]
        else:
            lines += [""] + [f"{Path(c['path']).name}: {c['spec']['family']} {c['params']:,} params" for c in ckpts]
        if history:
            for c in ckpts:
                if c.get("history"):
                    lines += ["", f"history of {Path(c['path']).name}", _history_table(c["history"])]
    for rel, message in info.get("unreadable", {}).items():
        lines.append(f"unreadable  {rel}: {message}")
    return "\n".join(lines)
