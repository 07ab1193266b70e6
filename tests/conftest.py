"""Shared fixtures: a briefly trained checkpoint and the real CIFAR-10 test images.

`trained_checkpoint` trains a VGG-19 at 6% width on the builtin CIFAR-10 subset (about 20 s on two
idle cores). The result is cached under the data cache (gear_trt.data.cache_root()/test-models),
keyed by the recipe and the torch version, so later sessions reuse it; each session gets its own copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import torch

SHARED_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.zip"
RECIPE = {"family": "vgg19", "width": 0.06, "data": "builtin", "epochs": 6, "batch": 64, "lr": 0.1, "wd": 5e-4, "seed": 0, "flip": True, "v": 1}


def _train(path: Path) -> None:
    from gear_trt.data import load_source, normalize
    from gear_trt.models import build_model, scaled_spec
    from gear_trt.artifacts.checkpoint import save_checkpoint

    torch.manual_seed(RECIPE["seed"])
    spec = scaled_spec(RECIPE["family"], RECIPE["width"])
    model = build_model(spec)
    train = load_source(RECIPE["data"], "train", progress=False)
    x, y = normalize(train.images), train.labels
    steps = RECIPE["epochs"] * math.ceil(len(x) / RECIPE["batch"])
    opt = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum=0.9, nesterov=True, weight_decay=RECIPE["wd"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, RECIPE["lr"], total_steps=steps)
    gen = torch.Generator().manual_seed(RECIPE["seed"])
    model.train()
    for _ in range(RECIPE["epochs"]):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), RECIPE["batch"]):
            idx = perm[i : i + RECIPE["batch"]]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    save_checkpoint(path, {"spec": spec.to_dict(), "model": model.state_dict(), "classes": list(train.classes),
                           "stage": "test-backbone", "metrics": {}, "complete": True})


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One pytest-xdist worker trains while the others wait for its result (POSIX; no lock elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a gear-trt checkpoint of a trained VGG-19 at 6% width (CIFAR-10 classes)."""
    from gear_trt.data import cache_root
    from gear_trt.artifacts.checkpoint import load_checkpoint

    key = hashlib.sha256(json.dumps([RECIPE, torch.__version__.split("+")[0]], sort_keys=True).encode()).hexdigest()[:12]
    cached = cache_root() / "test-models" / f"vgg19-6pct-{key}.pt"
    with _exclusive(cached.with_suffix(".lock")):
        try:
            load_checkpoint(cached)
        except Exception:  # missing or unreadable: (re)train
            _train(cached)
    dst = tmp_path_factory.mktemp("trained") / "backbone.pt"
    shutil.copyfile(cached, dst)
    return dst


@pytest.fixture(scope="session")
def real_test_set():
    """The real CIFAR-10 test images: all 10,000 from the shared JPEG zip when present, else the builtin 1,000."""
    from gear_trt.data import load_source

    src = str(SHARED_ZIP) if SHARED_ZIP.is_file() else "builtin"
    return load_source(src, "test", progress=False)
