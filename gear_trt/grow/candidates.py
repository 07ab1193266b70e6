"""The expanded network that holds every growth candidate, and the surgery that keeps the chosen ones.

For each width group g of current width W and K new-neuron candidates, the expanded network has
3W + K channels laid out [orig | A | B | new]:
- a split candidate of neuron i is the pair A_i = theta_i + delta_i, B_i = theta_i - delta_i (Firefly);
- a new neuron j has small trained fan-in n_j and tiny fan-out u_j (Firefly: U(-1e-2, 1e-2)).
Every layer that reads group g (a "consumer": the next conv, a shortcut, the classifier) sees the
columns [w (1 - s) | w s/2 | w s/2 | u t], with one split gate s_i and one new gate t_j per candidate.
At s = t = 0 the expanded network computes exactly the original function; at s_i = 1 neuron i is
replaced by A_i and B_i with its outgoing weights halved (the split). The loss gradient with respect to
a gate at 0 is the first-order (Taylor) estimate of the loss change from opening that candidate.

Layers that act channel by channel (BatchNorm, depthwise convs) carry copies of the original channel
for A and B, and identity BatchNorm / fresh trainable filters for new neurons. Tied channels (a
residual stream, a depthwise conv after a pointwise conv) share one group, hence one gate per channel.

Cross terms (a candidate reading another candidate) are second order in the gates. The expanded
weights are dense, but by default (`first_order=True`) the candidate rows of every layer are computed
from the original input channels only, so the cross terms are never evaluated: about half the
arithmetic of the dense network, with the same gate gradients at gate 0. `first_order=False`
evaluates the dense network, which equals the grown network exactly when the kept gates are fully
open (tests use that).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gear_trt.models import build_model, layer_table
from gear_trt.models.graph import LayerInfo
from gear_trt.spec import ModelSpec

SPLIT_INIT = 0.1  # delta ~ U(-0.1, 0.1) x RMS of the layer's weights (Firefly's U(-0.1, 0.1), made scale-free)
FANOUT_INIT = 1e-2  # new neurons' fan-out ~ U(-1e-2, 1e-2), and kept within +/-1e-2 while training (Firefly)
# Split directions stay within +/- SPLIT_CLAMP x RMS(theta) (Firefly takes a small step along the learned
# direction): the two halves of a split start close, so growing barely changes the network's function
# and the training after growth separates them.
SPLIT_CLAMP = 0.1


def _key(layer: LayerInfo) -> str:
    return layer.name.replace(".", "_")


def _col_view(x: Tensor, ndim: int) -> Tensor:
    """Shape a per-input-channel vector to broadcast over dim 1 of a weight of `ndim` dims."""
    return x.view(1, -1, *([1] * (ndim - 2)))


class GrowthCandidates(nn.Module):
    """Trainable candidate tensors around a frozen base model; see the module docstring."""

    def __init__(self, model: nn.Module, spec: ModelSpec, new_counts: list[int], generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if len(new_counts) != len(spec.widths):
            raise ValueError("one new-neuron count per width group")
        self.spec, self.new_counts, self.table = spec, list(new_counts), layer_table(spec)
        self.base = {k: v.detach() for k, v in model.state_dict().items()}
        device = next(iter(self.base.values())).device
        g = generator

        def uniform(shape: tuple[int, ...], scale: float) -> Tensor:
            return ((torch.rand(shape, generator=g) * 2 - 1) * scale).to(device)

        def normal(shape: tuple[int, ...], std: float) -> Tensor:
            return (torch.randn(shape, generator=g) * std).to(device)

        self.cand = nn.ParameterDict()
        self.bounds: dict[str, float] = {}  # candidate tensor -> elementwise bound kept by clamp_()
        for layer in self.table:
            if layer.kind == "bn":
                continue
            theta = self.base[f"{layer.name}.weight"]
            rms = float(theta.pow(2).mean().sqrt()) or 1.0
            k = _key(layer)
            if layer.kind == "dwconv":
                self.cand[f"{k}__new"] = nn.Parameter(normal((self.K(layer.out_group), *theta.shape[1:]), rms))
                continue
            if layer.out_group is not None:
                self.cand[f"{k}__delta"] = nn.Parameter(uniform(tuple(theta.shape), SPLIT_INIT * rms))
                self.bounds[f"{k}__delta"] = SPLIT_CLAMP * rms
                self.cand[f"{k}__new"] = nn.Parameter(normal((self.K(layer.out_group), *theta.shape[1:]), rms))
            if layer.in_group is not None:
                tail = tuple(theta.shape[2:])
                self.cand[f"{k}__fanout"] = nn.Parameter(uniform((theta.shape[0], self.K(layer.in_group), *tail), FANOUT_INIT))
                self.bounds[f"{k}__fanout"] = FANOUT_INIT
                if layer.out_group is not None:
                    self.cand[f"{k}__newnew"] = nn.Parameter(uniform((self.K(layer.out_group), self.K(layer.in_group), *tail), FANOUT_INIT))
                    self.bounds[f"{k}__newnew"] = FANOUT_INIT
        self.expanded_spec = spec.with_widths([3 * w + k for w, k in zip(spec.widths, new_counts)])

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep split directions and new fan-outs small (call after every optimizer step)."""
        for name, bound in self.bounds.items():
            self.cand[name].clamp_(-bound, bound)

    def K(self, group: Optional[int]) -> int:
        return 0 if group is None else self.new_counts[group]

    def expanded_model(self, first_order: bool = True) -> nn.Module:
        """The network of `expanded_spec` (weights come from `expanded_state` via functional_call).

        first_order: candidate rows read only the original input channels (no cross terms)."""
        device = next(iter(self.base.values())).device
        with torch.device("meta"):
            model = build_model(self.expanded_spec)
            if first_order:
                for layer in self.table:
                    if layer.kind in ("conv", "linear") and layer.in_group is not None and layer.out_group is not None:
                        parent, _, attr = layer.name.rpartition(".")
                        module = model.get_submodule(layer.name)
                        owner = model.get_submodule(parent) if parent else model
                        setattr(owner, attr, _FirstOrder(module, self.spec.widths[layer.out_group], self.spec.widths[layer.in_group]))
        return model.to_empty(device=device).eval()

    def zero_gates(self, value: float = 0.0) -> tuple[list[Tensor], list[Tensor]]:
        device = next(iter(self.base.values())).device
        s = [torch.full((w,), value, device=device) for w in self.spec.widths]
        t = [torch.full((k,), value, device=device) for k in self.new_counts]
        return s, t

    # -- the expanded network's tensors -------------------------------------------------------------
    def expanded_state(self, s: list[Tensor], t: list[Tensor]) -> dict[str, Tensor]:
        state: dict[str, Tensor] = {}
        for layer in self.table:
            n = layer.name
            if layer.kind == "bn":
                K = self.K(layer.out_group)
                for p, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                    base = self.base[f"{n}.{p}"]
                    state[f"{n}.{p}"] = torch.cat([base, base, base, base.new_full((K,), fill)])
                state[f"{n}.num_batches_tracked"] = self.base[f"{n}.num_batches_tracked"]
                continue
            state[f"{n}.weight"] = self._expanded_weight(layer, s, t)
            if layer.bias:
                b = self.base[f"{n}.bias"]
                state[f"{n}.bias"] = b if layer.out_group is None else torch.cat([b, b, b, b.new_zeros(self.K(layer.out_group))])
        return state

    def _expanded_weight(self, layer: LayerInfo, s: list[Tensor], t: list[Tensor]) -> Tensor:
        theta, k = self.base[f"{layer.name}.weight"], _key(layer)
        if layer.kind == "dwconv":
            return torch.cat([theta, theta, theta, self.cand[f"{k}__new"]])
        rows = theta
        if layer.out_group is not None:
            d = self.cand[f"{k}__delta"]
            rows = torch.cat([theta, theta + d, theta - d, self.cand[f"{k}__new"]])
        if layer.in_group is None:
            return rows
        u = self.cand[f"{k}__fanout"]
        fan = u if layer.out_group is None else torch.cat([u, u, u, self.cand[f"{k}__newnew"]])
        si, ti = _col_view(s[layer.in_group], rows.dim()), _col_view(t[layer.in_group], rows.dim())
        return torch.cat([rows * (1 - si), rows * (si / 2), rows * (si / 2), fan * ti], dim=1)

    # -- keeping the chosen candidates ----------------------------------------------------------------
    @torch.no_grad()
    def grown(self, keep_split: list[Tensor], keep_new: list[Tensor], new_gate: float = 1.0) -> tuple[ModelSpec, dict[str, Tensor]]:
        """The grown spec and its state dict: kept splits become (theta + delta, theta - delta) with the
        consumers' incoming weights halved, kept new neurons take their trained weights with their fan-out
        scaled by `new_gate` (the gate they were scored at, so the grown net is the expanded net there).

        New channels get identity BatchNorm parameters here; `osg.calibrate_new_channels` then sets them
        from data so they stay the identity in train mode too."""
        S = [m.nonzero().flatten() for m in keep_split]
        N = [m.nonzero().flatten() for m in keep_new]
        spec = self.spec.with_widths([w + len(a) + len(b) for w, a, b in zip(self.spec.widths, S, N)])
        state: dict[str, Tensor] = {}
        for layer in self.table:
            n, k, g = layer.name, _key(layer), layer.out_group
            if layer.kind == "bn":
                assert g is not None
                for p, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                    base = self.base[f"{n}.{p}"]
                    state[f"{n}.{p}"] = torch.cat([base, base[S[g]], base.new_full((len(N[g]),), fill)])
                state[f"{n}.num_batches_tracked"] = self.base[f"{n}.num_batches_tracked"].clone()
                continue
            theta = self.base[f"{n}.weight"]
            if layer.kind == "dwconv":
                assert g is not None
                state[f"{n}.weight"] = torch.cat([theta, theta[S[g]], self.cand[f"{k}__new"][N[g]]])
                continue
            rows, fan = theta, None
            if g is not None:
                d = self.cand[f"{k}__delta"]
                mask = _col_view(keep_split[g].to(theta.dtype), theta.dim()).transpose(0, 1)
                rows = torch.cat([theta + d * mask, (theta - d)[S[g]], self.cand[f"{k}__new"][N[g]]])
            if layer.in_group is not None:
                gi = layer.in_group
                u = self.cand[f"{k}__fanout"]
                fan = u if g is None else torch.cat([u, u[S[g]], self.cand[f"{k}__newnew"][N[g]]])
                halve = 1 - 0.5 * _col_view(keep_split[gi].to(rows.dtype), rows.dim())
                rows = torch.cat([rows * halve, rows[:, S[gi]] / 2, fan[:, N[gi]] * new_gate], dim=1)
            state[f"{n}.weight"] = rows.detach().clone()
            if layer.bias:
                b = self.base[f"{n}.bias"]
                state[f"{n}.bias"] = b.clone() if g is None else torch.cat([b, b[S[g]], b.new_zeros(len(N[g]))])
        return spec, state


class _FirstOrder(nn.Module):
    """A conv/linear of the expanded net whose candidate output rows read only the original inputs.

    Holds the layer's own `weight`/`bias` names, so functional_call with the dense expanded state works
    unchanged; the cross blocks of those tensors are simply never read (and get no gradient)."""

    def __init__(self, layer: nn.Module, out_orig: int, in_orig: int) -> None:
        super().__init__()
        self.conv: Optional[tuple[Any, Any, Any]] = None  # (stride, padding, dilation) for a conv
        if isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros":
            self.conv = (layer.stride, layer.padding, layer.dilation)
        elif not isinstance(layer, nn.Linear):
            raise TypeError(f"first-order candidates need a dense Conv2d or Linear, got {layer}")
        self.out_orig, self.in_orig = out_orig, in_orig
        self.weight, self.bias = layer.weight, layer.bias

    def _apply_layer(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.linear(x, weight, bias) if self.conv is None else F.conv2d(x, weight, bias, *self.conv)

    def forward(self, x: Tensor) -> Tensor:
        o, i, w, b = self.out_orig, self.in_orig, self.weight, self.bias
        orig = self._apply_layer(x, w[:o], None if b is None else b[:o])
        cand = self._apply_layer(x[:, :i], w[o:, :i], None if b is None else b[o:])
        return torch.cat([orig, cand], dim=1)


def default_new_counts(spec: ModelSpec, new_ratio: float) -> list[int]:
    return [max(1, math.ceil(new_ratio * w)) for w in spec.widths]
