"""The growth operators: how candidates get their weights and their scores.

Every grower fills the same `GrowthCandidates` (so budgets, selection, surgery and recording are
shared) and returns one score per candidate, higher = better:

- firefly: split and new-neuron candidates trained for one pass around the frozen network with every
  gate at a small epsilon, scored by minus the loss gradient at their gate (Firefly, Wu et al. 2020).
- gradmax: new neurons only, closed form, no candidate training. Fan-out 0 (the function is kept
  exactly) and fan-in along the top right singular vectors of the producing layer's weight gradient
  E[g x^T] (output gradient x input patches) over a few batches: the input directions the layer's error
  signal correlates with most, so the new fan-out receives the largest gradient once training resumes
  (GradMax, Evci et al. 2022). GradMax's paper sets fan-in 0 and picks the fan-out instead; behind
  BatchNorm a zero fan-in channel is a constant that train-mode BatchNorm divides by sqrt(eps), so
  here the roles are swapped (same SVD, the other factor).
- random: new neurons only, random fan-in, fan-out 0, random scores: the function-preserving control.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from gear_trt.choices import GROWERS  # noqa: F401 - the names live in the table the CLI reads without torch
from gear_trt.grow.candidates import GrowthCandidates, _key

Progress = Optional[Callable[[str, int, int, float], None]]
Batches = Iterable[tuple[Tensor, Tensor]]

# Candidate steps are Adam steps relative to each tensor's own scale (its clamp bound or its RMS), so one
# setting fits every layer and family; Adam's bias correction avoids RMSprop's ~10x-lr first step.
ADAM_EPS = 1e-15  # candidate gradients are scaled by the gate (1e-2) and the fan-out (1e-2): keep Adam scale-free


class Scores:
    """One score per candidate and group (`split` is None for growers that only add neurons)."""

    def __init__(self, split: Optional[list[np.ndarray]], new: list[np.ndarray], losses: list[float], batches: int) -> None:
        self.split, self.new, self.losses, self.batches = split, new, losses, batches


def firefly(cands: GrowthCandidates, batches: Batches, total: int, *, lr: float, train_gate: float,
            score_fraction: float, device: torch.device, progress: Progress = None) -> Scores:
    """Train the candidates for one pass at gate `train_gate`; scores = minus the averaged gate gradients."""
    expanded = cands.expanded_model()
    loss_fn = nn.CrossEntropyLoss()
    groups = []
    for name, p in cands.cand.items():
        scale = cands.bounds.get(name) or float(p.detach().pow(2).mean().sqrt()) or 1.0
        groups.append({"params": [p], "lr": lr * scale})
    opt = torch.optim.Adam(groups, eps=ADAM_EPS)
    # cosine decay over the pass: large steps while the candidates find a direction, small ones while scored
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / max(1, total))))
    s_gate, t_gate = cands.zero_gates(train_gate)
    gates = s_gate + t_gate
    for g in gates:
        g.requires_grad_(True)
    first_scored = min(total - 1, int(total * (1 - score_fraction)))
    losses: list[float] = []
    for i, (x, y) in enumerate(batches):
        if i == first_scored:  # gate gradients accumulate from here on
            for g in gates:
                g.grad = None
        loss = loss_fn(functional_call(expanded, cands.expanded_state(s_gate, t_gate), (x.to(device),)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        cands.clamp_()
        losses.append(float(loss.detach()))
        if progress:
            progress("candidates", i + 1, total, losses[-1])
    scored = len(losses) - first_scored if len(losses) > first_scored else len(losses)
    scores = _minus_mean_grad(gates, scored)
    return Scores(scores[: len(s_gate)], scores[len(s_gate):], losses, len(losses))


def exact_firefly_scores(cands: GrowthCandidates, batches: list[tuple[Tensor, Tensor]], device: torch.device,
                         progress: Progress = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Gate gradients at gates exactly 0 with the trained candidates frozen (costs one more partial pass)."""
    expanded = cands.expanded_model()
    s, t = cands.zero_gates(0.0)
    for g in s + t:
        g.requires_grad_(True)
    for p in cands.cand.parameters():
        p.requires_grad_(False)
    for i, (x, y) in enumerate(batches):
        nn.functional.cross_entropy(functional_call(expanded, cands.expanded_state(s, t), (x.to(device),)), y.to(device)).backward()
        if progress:
            progress("scores", i + 1, len(batches), 0.0)
    return _minus_mean_grad(s, len(batches)), _minus_mean_grad(t, len(batches))


def _minus_mean_grad(gates: list[Tensor], batches: int) -> list[np.ndarray]:
    """Scores: minus each gate's gradient averaged over `batches` (0 where a gate got none)."""
    return [np.zeros(g.numel()) if g.grad is None else -(g.grad / max(1, batches)).cpu().numpy() for g in gates]


@torch.no_grad()
def _zero_fanouts(cands: GrowthCandidates) -> None:
    for name, p in cands.cand.items():
        if name.endswith("__fanout") or name.endswith("__newnew"):
            p.zero_()


def gradmax(cands: GrowthCandidates, model: nn.Module, batches: Batches, total: int, *, device: torch.device,
            progress: Progress = None) -> Scores:
    """Closed form: fan-in from the SVD of each producing layer's weight gradient, fan-out 0 (module docstring)."""
    producers = [layer for layer in cands.table if layer.kind in ("conv", "linear") and layer.out_group is not None]
    weights: dict[str, Tensor] = {layer.name: model.get_submodule(layer.name).get_parameter("weight") for layer in producers}
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
        w.grad = None
    was_training = model.training
    model.eval()  # the statistics the grown net keeps
    losses: list[float] = []
    try:
        for i, (x, y) in enumerate(batches):
            loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            loss.backward()
            losses.append(float(loss.detach()))
            if progress:
                progress("gradients", i + 1, total, losses[-1])
        grads = {name: w.grad.detach().clone() for name, w in weights.items() if w.grad is not None}
    finally:
        for p, req in zip(model.parameters(), frozen):
            p.requires_grad_(req)
            p.grad = None
        model.train(was_training)
    _zero_fanouts(cands)
    new_scores = [np.zeros(k) for k in cands.new_counts]
    with torch.no_grad():
        for layer in producers:
            g, K = layer.out_group, cands.K(layer.out_group)
            theta, grad = cands.base[f"{layer.name}.weight"], grads.get(layer.name)
            if grad is None or K == 0:
                continue
            rows = grad.reshape(grad.shape[0], -1).double()
            _, sigma, vh = torch.linalg.svd(rows, full_matrices=False)
            r = min(K, vh.shape[0])
            row_norm = float(theta.reshape(theta.shape[0], -1).norm(dim=1).mean())
            fan_in = cands.cand[f"{_key(layer)}__new"]
            fan_in[:r] = (vh[:r] * row_norm).to(fan_in.dtype).reshape(r, *fan_in.shape[1:])
            # beyond the gradient's rank: directions it does not see, scored 0 (kept only if the budget asks)
            assert g is not None
            new_scores[g][:r] += (sigma[:r] * row_norm).cpu().numpy() / len(losses)
    return Scores(None, new_scores, losses, len(losses))


def random_insertion(cands: GrowthCandidates, generator: torch.Generator) -> Scores:
    """Random fan-in (the candidates' initialisation), fan-out 0, random scores."""
    _zero_fanouts(cands)
    return Scores(None, [torch.rand(k, generator=generator).numpy() for k in cands.new_counts], [], 0)
