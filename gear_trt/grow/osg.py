"""One-Shot Growth: train candidates for one pass, score them by their gate gradients, keep the best globally.

    grow(model, spec, train_loader, budget) -> GrowthResult(spec, state_dict, decisions)

1. Candidates (see candidates.py) around the frozen model; BatchNorm in eval mode so nothing but the
   candidates moves.
2. One pass over the training data optimising only the candidates (RMSprop, lr 1e-3, as Firefly) with
   every gate held at a small `train_gate` (Firefly's epsilon) so each candidate learns to help on its
   own (first order).
3. Scores: minus the loss gradient w.r.t. each gate, the first-order estimate of the loss decrease from
   opening that candidate. By default they come free from the same backward passes, averaged over the
   last `score_fraction` of the pass (at gate epsilon instead of 0: an O(epsilon) difference), so growth
   costs one pass of the expanded network; `exact_scores=True` adds a pass at gates exactly 0 with the
   candidates frozen.
4. Global selection across all groups by score; each candidate is kept if the grown network still fits
   the budget (exact accounting, budget.py), so growth is non-uniform wherever the scores are.
5. Apply: kept splits and new neurons become a new spec plus transferred weights, and BatchNorm
   running statistics are re-estimated on `recalibrate_batches` batches: new neurons start with
   identity statistics that do not match their activations, which would otherwise wreck the grown
   net's eval-mode accuracy until it trains.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from gear_trt.errors import BudgetError, DataError
from gear_trt.grow.budget import Budget
from gear_trt.grow.candidates import GrowthCandidates, default_new_counts
from gear_trt.models import group_names
from gear_trt.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class GrowthConfig:
    new_ratio: float = 0.5  # new-neuron candidates per group = ceil(new_ratio x width)
    lr: float = 1e-3  # RMSprop on the candidates (Firefly)
    train_gate: float = 0.01  # gate value while candidates train (Firefly's small step epsilon)
    score_fraction: float = 0.5  # the last part of the pass whose gate gradients are averaged into scores
    exact_scores: bool = False  # score in a second pass at gates exactly 0 (costs ~one more pass)
    score_batches: int = 20  # batches for that second pass
    recalibrate_batches: int = 20  # batches re-estimating BatchNorm statistics of the grown net (0: off)
    max_batches: Optional[int] = None  # cap on the candidate-training pass (None: one full pass)
    seed: int = 0


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

    def to_json(self, names: Iterable[str]) -> dict[str, Any]:
        return {
            "group_names": list(names),
            "widths_before": self.widths_before,
            "widths_after": self.widths_after,
            "added_split": self.added_split,
            "added_new": self.added_new,
            "budget": self.budget,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "seconds": self.seconds,
            "candidate_loss": self.candidate_loss,
            "scores": self.scores,
        }


def max_reachable(spec: ModelSpec, new_counts: list[int]) -> ModelSpec:
    """The largest net one shot can make: every neuron split and every new candidate kept."""
    return spec.with_widths([2 * w + k for w, k in zip(spec.widths, new_counts)])


def check_budget(spec: ModelSpec, budget: Budget, new_counts: list[int]) -> None:
    """Clear errors for budgets that are below the start or beyond one shot."""
    now, top = budget.cost(spec), budget.cost(max_reachable(spec, new_counts))
    if budget.limit < now:
        raise BudgetError(
            f"budget {budget.describe()} is below the backbone itself ({budget.describe(now)})",
            "give a larger budget or start from a smaller backbone",
        )
    if budget.limit > top:
        raise BudgetError(
            f"budget {budget.describe()} is beyond what one shot can reach from this backbone ({budget.describe(top)})",
            "use --shots N for multi-shot growth, raise --new-ratio, or lower the budget",
        )


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
    device = next(model.parameters()).device
    new_counts = default_new_counts(spec, config.new_ratio)
    check_budget(spec, budget, new_counts)
    gen = torch.Generator().manual_seed(config.seed)
    cands = GrowthCandidates(model.eval(), spec, new_counts, gen)
    expanded = cands.expanded_model()
    loss_fn = nn.CrossEntropyLoss()

    def forward(x: Tensor, s: list[Tensor], t: list[Tensor]) -> Tensor:
        return functional_call(expanded, cands.expanded_state(s, t), (x,))

    # 2. candidate training at a small gate; 3. its gate gradients are the scores
    opt = torch.optim.RMSprop(cands.cand.parameters(), lr=config.lr)
    s_gate, t_gate = cands.zero_gates(config.train_gate)
    for g in s_gate + t_gate:
        g.requires_grad_(True)
    losses: list[float] = []
    source = train_batches()
    if hasattr(source, "__len__"):  # stream the pass, keeping only the batches needed afterwards
        total = len(source) if config.max_batches is None else min(len(source), config.max_batches)  # type: ignore[arg-type]
        stream: Iterable[tuple[Tensor, Tensor]] = _take(source, total)
    else:
        materialised = list(_take(source, config.max_batches))
        total, stream = len(materialised), materialised
    if total == 0:
        raise DataError("growth needs training batches, the loader yielded none", "check the data source and batch size")
    tail: deque[tuple[Tensor, Tensor]] = deque(maxlen=max(1, config.recalibrate_batches, config.score_batches if config.exact_scores else 0))
    first_scored = min(total - 1, int(total * (1 - config.score_fraction)))
    for i, (x, y) in enumerate(stream):
        if i == first_scored:  # gradients accumulate in the gates from here on
            for g in s_gate + t_gate:
                g.grad = None
        loss = loss_fn(forward(x.to(device), s_gate, t_gate), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        cands.clamp_()
        losses.append(float(loss.detach()))
        tail.append((x, y))
        if progress:
            progress("candidates", i + 1, total, losses[-1])
    if not losses:
        raise DataError("growth needs training batches, the loader yielded none", "check the data source and batch size")
    batches = list(tail)
    # (a source shorter than its len() never reset the gate gradients: they then cover every batch)
    scored, gates = (len(losses) - first_scored if len(losses) > first_scored else len(losses)), s_gate + t_gate

    if config.exact_scores:
        gates = [torch.zeros_like(g).requires_grad_(True) for g in gates]
        for p in cands.cand.parameters():
            p.requires_grad_(False)
        score_set = batches[-config.score_batches :]
        for i, (x, y) in enumerate(score_set):
            loss_fn(forward(x.to(device), gates[: len(s_gate)], gates[len(s_gate) :]), y.to(device)).backward()
            if progress:
                progress("scores", i + 1, len(score_set), 0.0)
        scored = len(score_set)
    scores = [-(g.grad / scored).cpu().numpy() for g in gates]
    split_scores, new_scores = scores[: len(s_gate)], scores[len(s_gate) :]

    # 4. global selection under the budget
    keep_split, keep_new, cost_after = select(spec, budget, split_scores, new_scores)

    # 5. apply
    grown_spec, state = cands.grown(
        [torch.from_numpy(k).to(device) for k in keep_split], [torch.from_numpy(k).to(device) for k in keep_new]
    )
    if config.recalibrate_batches:
        state = recalibrate_batchnorm(grown_spec, state, batches[: config.recalibrate_batches], device)
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
        candidate_loss=losses,
        scores={n: {"split": _sig(a), "new": _sig(b)} for n, a, b in zip(names, split_scores, new_scores)},
    )


@torch.no_grad()
def recalibrate_batchnorm(spec: ModelSpec, state: dict[str, Tensor], batches: list[tuple[Tensor, Tensor]], device: torch.device) -> dict[str, Tensor]:
    """Re-estimate every BatchNorm's running mean/var as the exact average over `batches` (weights untouched)."""
    from gear_trt.models import build_model

    model = build_model(spec).to(device)
    model.load_state_dict(state)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    for x, _ in batches:
        model(x.to(device))
    for bn in bns:
        bn.momentum = 0.1
    new_state = model.state_dict()
    return {k: (new_state[k].detach().clone() if "running_" in k else v) for k, v in state.items()}


def select(
    spec: ModelSpec, budget: Budget, split_scores: list[np.ndarray], new_scores: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Greedy global selection: best score first, kept while the grown net fits the budget.

    Returns boolean keep-masks per group and the final cost. Ties break by (group, kind, index) so the
    result is deterministic."""
    cands = [
        (-float(sc), gi, kind, j)
        for gi, (ss, ns) in enumerate(zip(split_scores, new_scores))
        for kind, arr in ((0, ss), (1, ns))
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
    for i, item in enumerate(it):
        if n is not None and i >= n:
            return
        yield item
