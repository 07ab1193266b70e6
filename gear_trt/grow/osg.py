"""One-Shot Growth: candidates, scores, one global selection under the budget, function-preserving surgery.

    grow(model, spec, train_batches, budget) -> GrowthResult(spec, state_dict, ...)

1. Candidates (candidates.py) around the frozen model, filled and scored by a grower (growers.py):
   firefly (trained split and new-neuron candidates, gate-gradient scores), gradmax (closed form) or
   random (the control).
2. Global selection across all groups by score: each candidate is kept while the grown network still
   fits the budget (exact accounting, budget.py), so growth is non-uniform wherever the scores are.
   Candidates with a non-positive score are kept only when the budget asks for them (counted).
3. Surgery keeps the backbone's function: kept splits are theta +/- delta with the consumers halved;
   kept new neurons enter at the gate they were scored at (firefly) or with fan-out 0. The backbone's
   BatchNorm statistics are kept as they are; new channels get statistics measured on a few batches
   with weight = std and bias = mean, so they are the identity in eval *and* train mode.
4. The first `holdout_batches` batches are never trained on: the loss change the scores predict and the
   one the grown network realises are both measured there (growth.json).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from gear_trt.errors import BudgetError, ConfigError, DataError
from gear_trt.grow import growers
from gear_trt.grow.budget import Budget
from gear_trt.grow.candidates import GrowthCandidates, default_new_counts
from gear_trt.models import build_model, group_names, layer_table
from gear_trt.spec import ModelSpec

GROWERS = growers.GROWERS


@dataclasses.dataclass(frozen=True)
class GrowthConfig:
    grower: str = "gradmax"  # gradmax | firefly | random (growers.py); the pipeline's default too
    new_ratio: float = 0.5  # new-neuron candidates per group = ceil(new_ratio x width)
    lr: float = 0.1  # firefly: Adam step relative to each candidate tensor's scale (bound or RMS), cosine-decayed
    train_gate: float = 0.01  # firefly: gate while candidates train and are scored (Firefly's epsilon)
    score_fraction: float = 0.5  # firefly: the last part of the pass whose gate gradients are averaged into scores
    exact_scores: bool = False  # firefly: score in a second pass at gates exactly 0 (costs ~one more pass)
    score_batches: int = 20  # batches for that second pass
    gradmax_batches: int = 8  # gradmax: batches whose weight gradients are decomposed
    holdout_batches: int = 2  # batches never trained on; predicted vs realised loss change are measured there
    calibrate_batches: int = 10  # batches measuring the new channels' BatchNorm statistics
    max_batches: Optional[int] = None  # cap on the candidate pass (None: one full pass)
    seed: int = 0

    def validate(self) -> "GrowthConfig":
        if self.grower not in GROWERS:
            raise ConfigError(f"unknown grower '{self.grower}'", f"choose one of {', '.join(GROWERS)}")
        if not (self.new_ratio > 0 and np.isfinite(self.new_ratio)):
            raise ConfigError(f"--new-ratio must be > 0, got {self.new_ratio}", "use e.g. 0.5")
        if not (0 < self.train_gate <= 1):
            raise ConfigError(f"train gate must be in (0, 1], got {self.train_gate}", "use e.g. 0.01 (Firefly)")
        return self

    @property
    def splits(self) -> bool:
        """Whether this grower has split candidates (the others only add neurons)."""
        return self.grower == "firefly"


@dataclasses.dataclass
class GrowthResult:
    spec: ModelSpec
    state_dict: dict[str, Tensor]
    widths_before: list[int]
    widths_after: list[int]
    added_split: list[int]
    added_new: list[int]
    budget: dict[str, Any]
    cost_before: float
    cost_after: float
    seconds: float
    candidate_loss: list[float]
    scores: dict[str, dict[str, list[float]]]  # group -> {"split": [...], "new": [...]}
    grower: str = "firefly"
    kept_nonpositive: int = 0  # kept candidates whose score was <= 0 (only to fill the budget)
    holdout: dict[str, Any] = dataclasses.field(default_factory=dict)  # loss before/after, predicted/realised change

    def to_json(self, names: Iterable[str]) -> dict[str, Any]:
        return {
            "grower": self.grower,
            "group_names": list(names),
            "widths_before": self.widths_before,
            "widths_after": self.widths_after,
            "added_split": self.added_split,
            "added_new": self.added_new,
            "kept_nonpositive": self.kept_nonpositive,
            "holdout": self.holdout,
            "budget": self.budget,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "seconds": self.seconds,
            "candidate_loss": self.candidate_loss,
            "scores": self.scores,
        }


class BudgetBelowBackbone(BudgetError):
    """The budget is smaller than the network growth starts from."""


class BudgetBeyondOneShot(BudgetError):
    """One shot cannot reach the budget with these candidate counts."""


def max_reachable(spec: ModelSpec, new_counts: list[int], splits: bool = True) -> ModelSpec:
    """The largest net one shot can make: every neuron split (if the grower splits) and every new candidate kept."""
    return spec.with_widths([(2 if splits else 1) * w + k for w, k in zip(spec.widths, new_counts)])


def check_budget(spec: ModelSpec, budget: Budget, new_counts: list[int], splits: bool = True) -> None:
    """Clear errors for budgets that are below the start or beyond one shot."""
    now, top = budget.cost(spec), budget.cost(max_reachable(spec, new_counts, splits))
    if budget.limit < now:
        raise BudgetBelowBackbone(
            f"budget {budget.describe()} is below the backbone itself ({budget.describe(now)})",
            "give a larger budget or start from a smaller backbone",
        )
    if budget.limit > top:
        raise BudgetBeyondOneShot(
            f"budget {budget.describe()} is beyond what one shot can reach from this backbone ({budget.describe(top)})",
            "use --shots N for multi-shot growth, raise --new-ratio, or lower the budget",
        )


def reachable_new_ratio(spec: ModelSpec, budget: Budget, grower: str, new_ratio: float = 0.5, limit: float = 4.0) -> float:
    """The smallest new-neuron ratio >= `new_ratio` (in steps of 0.5, at most `limit`) with which one shot of this
    grower reaches the budget (growers without splits need more new candidates for the same budget)."""
    splits = GrowthConfig(grower=grower).splits
    ratio = new_ratio
    while True:
        try:
            check_budget(spec, budget, default_new_counts(spec, ratio), splits)
            return ratio
        except BudgetBeyondOneShot:
            if ratio >= limit:
                raise
            ratio += 0.5


def grow(
    model: nn.Module,
    spec: ModelSpec,
    train_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    budget: Budget,
    config: GrowthConfig = GrowthConfig(),
    *,
    progress: Optional[Callable[[str, int, int, float], None]] = None,
) -> GrowthResult:
    """Grow `model` (of `spec`) once to fit `budget`. `train_batches()` yields (x, y) for one pass."""
    t0 = time.perf_counter()
    config.validate()
    device = next(model.parameters()).device
    new_counts = default_new_counts(spec, config.new_ratio)
    check_budget(spec, budget, new_counts, config.splits)
    gen = torch.Generator().manual_seed(config.seed)
    model.eval()
    cands = GrowthCandidates(model, spec, new_counts, gen)

    # The pass: the first batches are held out, the rest stream through the grower; only the batches
    # needed afterwards (calibration, exact scores) are kept.
    source = train_batches()
    wanted = config.gradmax_batches if config.grower == "gradmax" else 0 if config.grower == "random" else config.max_batches
    sized = hasattr(source, "__len__")
    if not sized:
        source = list(_take(source, None if wanted is None else config.holdout_batches + wanted))
    available = len(source)  # type: ignore[arg-type]
    if available == 0:
        raise DataError("growth needs training batches, the loader yielded none", "check the data source and batch size")
    holdout_n = min(config.holdout_batches, available - 1)
    total = available - holdout_n if wanted is None else max(0, min(available - holdout_n, wanted))
    it = iter(source)
    holdout = list(_take(it, holdout_n))
    keep = max(config.calibrate_batches, config.score_batches if config.exact_scores else 0)
    tail: deque[tuple[Tensor, Tensor]] = deque(maxlen=max(1, keep))

    def stream() -> Iterable[tuple[Tensor, Tensor]]:
        for batch in _take(it, total):
            tail.append(batch)
            yield batch

    if config.grower == "firefly":
        result = growers.firefly(cands, stream(), total, lr=config.lr, train_gate=config.train_gate,
                                 score_fraction=config.score_fraction, device=device, progress=progress)
        if not result.losses:
            raise DataError("growth needs training batches, the loader yielded none", "check the data source and batch size")
        split_scores, new_scores = result.split, result.new
        if config.exact_scores:
            split_scores, new_scores = growers.exact_firefly_scores(cands, list(tail)[-config.score_batches:], device, progress)
    elif config.grower == "gradmax":
        result = growers.gradmax(cands, model, stream(), total, device=device, progress=progress)
        split_scores, new_scores = None, result.new
    else:
        result = growers.random_insertion(cands, gen)
        split_scores, new_scores = None, result.new
    calibration = list(tail)[-config.calibrate_batches:] if tail else []
    for batch in _take(it, max(0, config.calibrate_batches - len(calibration))):  # top up from the unused batches
        calibration.append(batch)
    if not calibration:
        calibration = holdout
    assert split_scores is None or config.splits
    splits = split_scores if split_scores is not None else [np.full(w, -np.inf) for w in spec.widths]

    keep_split, keep_new, cost_after = select(spec, budget, splits, new_scores, allow_split=config.splits)
    new_gate = config.train_gate if config.grower == "firefly" else 1.0  # gradmax/random: fan-out is 0 anyway
    grown_spec, state = cands.grown([torch.from_numpy(k).to(device) for k in keep_split],
                                    [torch.from_numpy(k).to(device) for k in keep_new], new_gate=new_gate)
    state = calibrate_new_channels(grown_spec, state, [int(k.sum()) for k in keep_new], calibration, device)

    kept_scores = [sc[k] for sc, k in zip(splits, keep_split)] + [sc[k] for sc, k in zip(new_scores, keep_new)]
    # first order: a kept split moves its gate 0 -> 1, a kept new neuron 0 -> new_gate; gradmax/random keep
    # the function exactly (fan-out 0), so they predict no change until training resumes
    predicted = 0.0
    if config.grower == "firefly":
        predicted = -float(sum(sc[k].sum() for sc, k in zip(splits, keep_split)))
        predicted -= new_gate * float(sum(sc[k].sum() for sc, k in zip(new_scores, keep_new)))
    names = group_names(spec)
    return GrowthResult(
        spec=grown_spec,
        state_dict=state,
        widths_before=list(spec.widths),
        widths_after=list(grown_spec.widths),
        added_split=[int(k.sum()) for k in keep_split],
        added_new=[int(k.sum()) for k in keep_new],
        budget=dataclasses.asdict(budget),
        cost_before=budget.cost(spec),
        cost_after=cost_after,
        seconds=time.perf_counter() - t0,
        candidate_loss=result.losses,
        scores={n: {"split": _sig(a) if config.splits else [], "new": _sig(b)} for n, a, b in zip(names, splits, new_scores)},
        grower=config.grower,
        kept_nonpositive=int(sum((k <= 0).sum() for k in kept_scores)),
        holdout=_holdout_change(model, grown_spec, state, holdout, predicted, device),
    )


@torch.no_grad()
def calibrate_new_channels(spec: ModelSpec, state: dict[str, Tensor], added_new: list[int],
                           batches: list[tuple[Tensor, Tensor]], device: torch.device) -> dict[str, Tensor]:
    """Normalise each new channel like its siblings without changing what the network computes.

    One eval-mode pass over `batches` (new channels still at identity BatchNorm) measures each new
    channel's BatchNorm input: mean mu, std sigma. The channel then gets running statistics (mu, sigma^2),
    weight g = the mean |weight| of its layer's existing channels and bias g mu / sigma, so its output is
    its input times c = g / sigma: the siblings' scale. Without that, a channel whose raw activations are
    k times larger than its siblings' would learn k^2 times faster once training resumes (measured:
    mobilenet_v1's grown net lost 0.3 nats in its first epoch). Because it is a positive rescaling it
    commutes with ReLU, holds in train mode too (batch statistics ~ mu, sigma), and the consumers' fan-out
    columns of the channel are divided by c, so the grown net computes what it did before. A residual
    stream, written by several BatchNorms, has no single c: its new channels are normalised with the
    siblings' mean weight and bias (see below). Every other channel keeps the backbone's statistics untouched."""
    model = build_model(spec).to(device).eval()
    model.load_state_dict(state)
    table = layer_table(spec)
    bns = {layer.name: layer.out_group for layer in table if layer.kind == "bn"}
    sums: dict[str, tuple[Any, Any, float]] = {}  # BatchNorm -> (sum, sum of squares, count) per channel

    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0].double()
            dims = [0, 2, 3] if x.dim() == 4 else [0]
            s1, s2, count = sums.get(name, (0.0, 0.0, 0.0))
            sums[name] = (s1 + x.sum(dims), s2 + x.pow(2).sum(dims), count + x.numel() / x.shape[1])
        return record

    handles = [model.get_submodule(name).register_forward_pre_hook(hook(name)) for name, g in bns.items()
               if g is not None and added_new[g] > 0]
    try:
        for x, _ in batches:
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    out = dict(state)
    writers: dict[int, int] = {}  # group -> BatchNorms whose output consumers read (not followed by a dwconv)
    for i, layer in enumerate(table):
        if layer.kind == "bn" and layer.out_group is not None and not (i + 1 < len(table) and table[i + 1].kind == "dwconv"):
            writers[layer.out_group] = writers.get(layer.out_group, 0) + 1
    # In forward order: a depthwise conv passes its group's scale on to the BatchNorm after it (MobileNet).
    scale: dict[int, Tensor] = {}  # group -> the new channels' current scale c (output / placeholder output)
    inherited: dict[int, Tensor] = {}
    for layer in table:
        g = layer.out_group
        if g is None or added_new[g] == 0:
            continue
        k, w = added_new[g], spec.widths[g]
        new = slice(w - k, w)
        if layer.kind == "dwconv":
            inherited[g] = scale.get(g, torch.ones(k, dtype=torch.float64, device=device))
            continue
        if layer.kind != "bn" or layer.name not in sums:
            continue
        s1, s2, n = sums[layer.name]
        gain = inherited.pop(g, torch.ones(k, dtype=torch.float64, device=device))
        mean = s1[new] / n * gain
        var = (s2[new] / n - (s1[new] / n).pow(2)).clamp_min(0) * gain.pow(2)
        bn = model.get_submodule(layer.name)
        assert isinstance(bn, nn.BatchNorm2d)
        sigma = (var + bn.eps).sqrt()
        siblings = out[f"{layer.name}.weight"][: w - k].abs()
        g_new = float(siblings.mean()) if len(siblings) else 1.0
        bias = g_new * mean / sigma  # output = c x: a rescaling, undone in the consumers below
        if writers.get(g, 0) > 1:
            # A residual stream sums several BatchNorms' outputs and every block adds to it: with bias c mu the
            # new channels would grow along the depth (measured: resnet18 lost 0.5-1.7 nats in its first
            # epoch after growth). They get the siblings' mean bias instead, like any normalised channel; their
            # fan-out is 0 (gradmax, random) or epsilon-small (firefly), so the function is kept all the same.
            bias = torch.full_like(sigma, float(out[f"{layer.name}.bias"][: w - k].mean()) if w > k else 0.0)
        for key, value in (("running_mean", mean), ("running_var", var), ("weight", torch.full_like(sigma, g_new)),
                           ("bias", bias)):
            t = out[f"{layer.name}.{key}"].clone()
            t[new] = value.to(t.dtype)
            out[f"{layer.name}.{key}"] = t
        scale[g] = g_new / sigma * gain  # output relative to the placeholder pass's output
    for layer in table:  # consumers read the rescaled channels: divide their fan-out by c
        gi = layer.in_group
        if layer.kind not in ("conv", "linear") or gi is None or gi not in scale or writers.get(gi) != 1:
            continue
        k, w = added_new[gi], spec.widths[gi]
        weight = out[f"{layer.name}.weight"].clone()
        c = scale[gi].to(weight.dtype).view(1, k, *([1] * (weight.dim() - 2)))
        weight[:, w - k:] = weight[:, w - k:] / c
        out[f"{layer.name}.weight"] = weight
    return out


@torch.no_grad()
def _holdout_change(model: nn.Module, spec: ModelSpec, state: dict[str, Tensor], batches: list[tuple[Tensor, Tensor]],
                    predicted: float, device: torch.device) -> dict[str, Any]:
    """Mean cross-entropy of the backbone and of the grown net (eval mode) on batches never trained on."""
    if not batches:
        return {}
    grown = build_model(spec).to(device).eval()
    grown.load_state_dict(state)
    model.eval()

    def loss(net: nn.Module) -> float:
        total = sum(float(nn.functional.cross_entropy(net(x.to(device)), y.to(device), reduction="sum")) for x, y in batches)
        return total / sum(len(y) for _, y in batches)

    before, after = loss(model), loss(grown)
    return {"batches": len(batches), "images": sum(len(y) for _, y in batches), "loss_before": round(before, 6),
            "loss_after": round(after, 6), "predicted_change": float(f"{predicted:.6g}"), "realised_change": round(after - before, 6)}


def select(
    spec: ModelSpec, budget: Budget, split_scores: list[np.ndarray], new_scores: list[np.ndarray], allow_split: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Greedy global selection: best score first, kept while the grown net fits the budget.

    Returns boolean keep-masks per group and the final cost. Ties break by (group, kind, index) so the
    result is deterministic."""
    cands = [
        (-float(sc), gi, kind, j)
        for gi, (ss, ns) in enumerate(zip(split_scores, new_scores))
        for kind, arr in (((0, ss), (1, ns)) if allow_split else ((1, ns),))
        for j, sc in enumerate(arr)
    ]
    cands.sort()
    widths = list(spec.widths)
    keep_split = [np.zeros(len(s), bool) for s in split_scores]
    keep_new = [np.zeros(len(s), bool) for s in new_scores]
    cost = budget.cost(spec)
    for _, gi, kind, j in cands:
        widths[gi] += 1
        trial = budget.cost(spec.with_widths(widths))
        if trial <= budget.limit:
            (keep_split if kind == 0 else keep_new)[gi][j] = True
            cost = trial
        else:
            widths[gi] -= 1
    return keep_split, keep_new, cost


def _sig(a: np.ndarray) -> list[float]:
    """Scores for growth.json at 6 significant digits (they can be tiny: no fixed rounding)."""
    return [float(f"{v:.6g}") for v in a.tolist()]


def _take(it: Iterable[Any], n: Optional[int]) -> Iterable[Any]:
    if n is not None and n <= 0:
        return
    for i, item in enumerate(it):
        yield item
        if n is not None and i + 1 >= n:
            return
