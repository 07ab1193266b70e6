"""One-Shot Growth: exact insertion, exact surgery, budgets never exceeded, non-uniform selection, the growers.

Outcomes on real images (accuracy and loss after growth and after training on) are in test_grow_quality.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from gear_trt.errors import BudgetError, ConfigError
from gear_trt.grow import Budget, GrowthConfig, grow, parse_budget
from gear_trt.grow.budget import growth_ratio_budget
from gear_trt.grow.candidates import GrowthCandidates, default_new_counts
from gear_trt.grow.growers import GROWERS
from gear_trt.grow.osg import max_reachable, select
from gear_trt.models import REGISTRY, build_model, count_params, layer_table, scaled_spec

FAMILIES = list(REGISTRY)


def _randomised(spec):
    """A model whose BatchNorm layers are not the identity, so copying statistics matters."""
    torch.manual_seed(0)
    model = build_model(spec).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_inserting_candidates_keeps_the_function(family):
    spec = scaled_spec(family, 0.08)
    model = _randomised(spec)
    cands = GrowthCandidates(model, spec, default_new_counts(spec, 0.5), torch.Generator().manual_seed(1))
    s, t = cands.zero_gates(0.0)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = functional_call(cands.expanded_model(), cands.expanded_state(s, t), (x,))
    assert ref.abs().max() > 1e-3  # a non-trivial function
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # ...while open gates do change it: the candidates are live
    s1, t1 = cands.zero_gates(1.0)
    with torch.no_grad():
        moved = functional_call(cands.expanded_model(), cands.expanded_state(s1, t1), (x,))
    assert (moved - ref).abs().max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_first_order_network_has_the_dense_gate_gradients(family):
    """Dropping the cross terms (candidates reading candidates) is exact for the scores at gate 0."""
    spec = scaled_spec(family, 0.08)
    cands = GrowthCandidates(_randomised(spec), spec, default_new_counts(spec, 0.5), torch.Generator().manual_seed(4))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    grads = []
    for first_order in (True, False):
        s, t = cands.zero_gates(0.0)
        for g in s + t:
            g.requires_grad_(True)
        out = functional_call(cands.expanded_model(first_order), cands.expanded_state(s, t), (x,))
        torch.nn.functional.cross_entropy(out, y).backward()
        grads.append(torch.cat([g.grad for g in s + t]))
    assert grads[1].abs().max() > 1e-4  # non-trivial gradients
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    # away from 0 the two differ (second order): the first-order net really skips the cross terms
    s, t = cands.zero_gates(1.0)
    with torch.no_grad():
        a = functional_call(cands.expanded_model(True), cands.expanded_state(s, t), (x,))
        b = functional_call(cands.expanded_model(False), cands.expanded_state(s, t), (x,))
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_grown_model_equals_expanded_model_with_kept_gates_open(family):
    """The surgery (split -> theta +/- delta, consumers halved; new -> trained weights) is exact."""
    spec = scaled_spec(family, 0.08)
    model = _randomised(spec)
    cands = GrowthCandidates(model, spec, default_new_counts(spec, 0.5), torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(3)
    keep_s = [torch.rand(w, generator=gen) < 0.4 for w in spec.widths]
    keep_n = [torch.rand(k, generator=gen) < 0.4 for k in cands.new_counts]
    for new_gate in (1.0, 0.3):  # kept new neurons enter at a gate: their fan-out scaled by it
        grown_spec, state = cands.grown(keep_s, keep_n, new_gate=new_gate)
        assert list(grown_spec.widths) == [w + int(a.sum()) + int(b.sum()) for w, a, b in zip(spec.widths, keep_s, keep_n)]
        grown = build_model(grown_spec).eval()
        grown.load_state_dict(state)  # strict: every tensor has the grown shape
        x = torch.randn(3, 3, 32, 32)
        with torch.no_grad():
            dense = cands.expanded_model(first_order=False)  # fully open gates: every cross term counts
            gates = cands.expanded_state([k.float() for k in keep_s], [k.float() * new_gate for k in keep_n])
            torch.testing.assert_close(grown(x), functional_call(dense, gates, (x,)), rtol=1e-4, atol=1e-5)


def test_split_halves_the_consumer_weights_and_copies_bn():
    spec = scaled_spec("vgg19", 0.05)
    model = _randomised(spec)
    cands = GrowthCandidates(model, spec, [1] * len(spec.widths), torch.Generator().manual_seed(0))
    keep_s = [torch.zeros(w, dtype=torch.bool) for w in spec.widths]
    keep_s[0][0] = True  # split neuron 0 of conv1 only
    grown_spec, state = cands.grown(keep_s, [torch.zeros(k, dtype=torch.bool) for k in cands.new_counts])
    base = model.state_dict()
    d = cands.cand["features_0__delta"].detach()
    torch.testing.assert_close(state["features.0.weight"][0], base["features.0.weight"][0] + d[0])
    torch.testing.assert_close(state["features.0.weight"][-1], base["features.0.weight"][0] - d[0])
    torch.testing.assert_close(state["features.3.weight"][:, 0], base["features.3.weight"][:, 0] / 2)
    torch.testing.assert_close(state["features.3.weight"][:, -1], base["features.3.weight"][:, 0] / 2)
    for p in ("weight", "bias", "running_mean", "running_var"):
        assert state[f"features.1.{p}"][-1] == base[f"features.1.{p}"][0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("budget_text", ["params", "bytes@int8", "bytes@fp16", "train", "neurons"])
def test_budget_is_never_exceeded(family, budget_text):
    spec = scaled_spec(family, 0.1)
    rng = np.random.default_rng(0)
    counts = default_new_counts(spec, 0.5)
    kind, _, prec = budget_text.partition("@")
    for frac in (0.1, 0.5, 0.9):
        probe = Budget(kind, 0, precision=prec or "fp32")
        lo, hi = probe.cost(spec), probe.cost(max_reachable(spec, counts))
        budget = Budget(kind, lo + frac * (hi - lo), precision=prec or "fp32")
        split = [rng.normal(size=w) for w in spec.widths]
        new = [rng.normal(size=k) for k in counts]
        ks, kn, cost = select(spec, budget, split, new)
        grown = spec.with_widths([w + a.sum() + b.sum() for w, a, b in zip(spec.widths, ks, kn)])
        assert budget.cost(grown) == cost <= budget.limit
        assert cost > lo  # it did grow
        # greedy filled the budget: no single remaining candidate still fits the smallest step
        assert budget.limit - cost < max(budget.cost(grown.with_widths([w + (i == g) for i, w in enumerate(grown.widths)])) - cost for g in range(len(spec.widths)))


def test_param_budget_cost_is_the_real_parameter_count():
    spec = scaled_spec("resnet18", 0.1)
    assert Budget("params", 0).cost(spec) == count_params(spec) == sum(p.numel() for p in build_model(spec).parameters())


def test_deployed_bytes_fold_batchnorm_and_scale_with_precision():
    spec = scaled_spec("vgg19", 0.05)
    model = build_model(spec)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    channels = sum(m.weight.shape[0] for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert Budget("bytes", 0, precision="fp32").cost(spec) == 4 * weights + 4 * channels
    assert Budget("bytes", 0, precision="fp16").cost(spec) == 2 * weights + 2 * channels
    assert Budget("bytes", 0, precision="int8").cost(spec) == weights + 8 * channels


def test_selection_is_non_uniform_when_scores_are():
    spec = scaled_spec("vgg19", 0.1)
    counts = default_new_counts(spec, 0.5)
    split = [np.full(w, 1.0 if g < 4 else -1.0) for g, w in enumerate(spec.widths)]
    new = [np.full(k, -2.0) for k in counts]
    budget = growth_ratio_budget(spec, 0.2)
    ks, kn, _ = select(spec, budget, split, new)
    added = [int(a.sum() + b.sum()) for a, b in zip(ks, kn)]
    assert sum(added) == round(0.2 * sum(spec.widths))
    assert all(a == spec.widths[g] for g, a in enumerate(added[:4]))  # the high scorers were all split first
    assert sum(added[4:]) == sum(added) - sum(spec.widths[:4])


@pytest.mark.parametrize(
    "text,kind,limit,extra",
    [
        ("250k", "params", 250_000, {}),
        ("1.2M", "params", 1_200_000, {}),
        ("1.5MB@int8", "bytes", 1_500_000, {"precision": "int8"}),
        ("800KiB@fp16", "bytes", 800 * 1024, {"precision": "fp16"}),
        ("300MB@train", "train", 300e6, {"batch": 128}),
        ("1GB@train:256", "train", 1e9, {"batch": 256}),
    ],
)
def test_parse_budget(text, kind, limit, extra):
    b = parse_budget(text)
    assert (b.kind, b.limit) == (kind, limit)
    for k, v in extra.items():
        assert getattr(b, k) == v


@pytest.mark.parametrize("text,fragment", [("lots", "cannot read"), ("3MB", "no precision"), ("3MB@int4", "unknown precision"), ("3XB@int8", "unknown size unit")])
def test_parse_budget_errors_say_what_to_write(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_budget(text)


def _toy_batches(spec, n=6, batch=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    data = [(torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, spec.num_classes, (batch,), generator=gen)) for _ in range(n)]
    return lambda: iter(data)


def test_budget_below_backbone_or_beyond_one_shot_is_explained():
    spec = scaled_spec("mobilenet_v1", 0.05)
    model = build_model(spec)
    with pytest.raises(BudgetError, match="below the backbone"):
        grow(model, spec, _toy_batches(spec), Budget("params", count_params(spec) - 1), GrowthConfig(grower="firefly"))
    with pytest.raises(BudgetError, match="one shot can reach"):
        grow(model, spec, _toy_batches(spec), Budget("params", 100 * count_params(spec)), GrowthConfig(grower="firefly"))


@pytest.mark.parametrize("family", FAMILIES)
def test_grow_end_to_end_fits_budget_and_loads(family):
    spec = scaled_spec(family, 0.06)
    torch.manual_seed(0)
    model = build_model(spec)
    budget = Budget("params", 1.6 * count_params(spec))
    res = grow(model, spec, _toy_batches(spec), budget, GrowthConfig(grower="firefly"))
    assert count_params(res.spec) <= budget.limit
    assert count_params(res.spec) > count_params(spec)
    assert res.widths_after == list(res.spec.widths)
    grown = build_model(res.spec)
    grown.load_state_dict(res.state_dict)
    assert grown(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(res.candidate_loss) == 6 - GrowthConfig(grower="firefly").holdout_batches  # the held-out batches are not trained on
    assert res.holdout["batches"] == GrowthConfig(grower="firefly").holdout_batches
    # the frozen backbone is untouched
    for k, v in build_model(spec).state_dict().items():
        assert v.shape == model.state_dict()[k].shape


def test_grow_is_deterministic_under_a_seed():
    spec = scaled_spec("vgg19", 0.06)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(spec)
        results.append(grow(model, spec, _toy_batches(spec), growth_ratio_budget(spec, 0.5), GrowthConfig(grower="firefly", seed=4)))
    assert results[0].widths_after == results[1].widths_after
    for k in results[0].state_dict:
        assert torch.equal(results[0].state_dict[k], results[1].state_dict[k])


def test_exact_scores_agree_in_sign_with_the_one_pass_scores():
    """The free scores (gate gradients at epsilon during training) estimate the ones at gate 0."""
    spec = scaled_spec("vgg19", 0.08)
    torch.manual_seed(0)
    model = build_model(spec)
    budget = growth_ratio_budget(spec, 0.5)
    fast = grow(model, spec, _toy_batches(spec, n=4), budget, GrowthConfig(grower="firefly", score_fraction=0.25, holdout_batches=0, seed=1))
    exact = grow(model, spec, _toy_batches(spec, n=4), budget,
                 GrowthConfig(grower="firefly", score_fraction=0.25, exact_scores=True, score_batches=1, holdout_batches=0, seed=1))
    a = np.concatenate([np.array(fast.scores[n]["split"] + fast.scores[n]["new"]) for n in fast.scores])
    b = np.concatenate([np.array(exact.scores[n]["split"] + exact.scores[n]["new"]) for n in exact.scores])
    # they differ by the gate (epsilon vs 0) and by the candidates' last Adam step
    assert np.corrcoef(a, b)[0, 1] > 0.8


@pytest.mark.parametrize("grower", ["gradmax", "random"])
@pytest.mark.parametrize("family", FAMILIES)
def test_neuron_adding_growers_keep_the_function_exactly(family, grower):
    """Fan-out 0: the grown net computes the backbone's function, in eval mode, before any training."""
    spec = scaled_spec(family, 0.06)
    model = _randomised(spec)
    res = grow(model, spec, _toy_batches(spec), Budget("params", 1.5 * count_params(spec)), GrowthConfig(grower=grower, new_ratio=1.0))
    assert res.added_split == [0] * len(spec.widths) and sum(res.added_new) > 0
    grown = build_model(res.spec).eval()
    grown.load_state_dict(res.state_dict)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), model.eval()(x), rtol=1e-5, atol=1e-5)
    assert res.holdout["realised_change"] == pytest.approx(0, abs=1e-5)


def test_gradmax_fan_in_follows_the_weight_gradient():
    """Every new neuron's fan-in row is one of the top right singular vectors of its layer's weight gradient."""
    spec = scaled_spec("vgg19", 0.06)
    model = _randomised(spec)
    batches = _toy_batches(spec, n=3)
    res = grow(model, spec, batches, Budget("params", 1.3 * count_params(spec)), GrowthConfig(grower="gradmax", new_ratio=1.0, holdout_batches=0))
    model.zero_grad()
    for x, y in batches():
        torch.nn.functional.cross_entropy(model.eval()(x), y).backward()
    checked = 0
    for layer in layer_table(spec):
        g = layer.out_group
        if layer.kind != "conv" or g is None or res.added_new[g] == 0:
            continue
        grad = model.get_submodule(layer.name).weight.grad.flatten(1).double()
        vh = torch.linalg.svd(grad, full_matrices=False)[2]
        w = res.widths_after[g]
        added = res.state_dict[f"{layer.name}.weight"][w - res.added_new[g]:, : spec.widths[layer.in_group] if layer.in_group is not None else None]
        added = added.flatten(1).double()
        cosines = (added @ vh.T).abs() / added.norm(dim=1, keepdim=True)
        assert (cosines.max(dim=1).values > 0.999).all(), layer.name
        checked += 1
    assert checked >= 3
    assert sum(v > 0 for group in res.scores.values() for v in group["new"]) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_new_channels_are_scaled_like_their_siblings_in_train_and_eval_mode(family):
    """New channels' BatchNorm: statistics measured from data, weight = the siblings' mean weight, bias such that
    the channel's output is its input times weight / std, in eval mode and (up to batch noise) in train mode."""
    spec = scaled_spec(family, 0.06)
    model = _randomised(spec)
    # a trained network's running statistics match its data; give the toy backbone that property
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x, _ in _toy_batches(spec, batch=32)():
            model(x)
    res = grow(model.eval(), spec, _toy_batches(spec, batch=32), Budget("params", 1.5 * count_params(spec)),
               GrowthConfig(grower="random", new_ratio=1.0))
    grown = build_model(res.spec)
    grown.load_state_dict(res.state_dict)
    table = layer_table(res.spec)
    bns = [i for i, layer in enumerate(table) if layer.kind == "bn" and res.added_new[layer.out_group] > 0]
    feeds = {table[i].out_group: 0 for i in bns}  # BatchNorms per group whose output the consumers read
    for i in bns:
        if not (i + 1 < len(table) and table[i + 1].kind == "dwconv"):
            feeds[table[i].out_group] += 1
    # a residual stream (several BatchNorms add to it) is normalised with the siblings' bias instead: not this test's rule
    layer = next(table[i] for i in bns if feeds[table[i].out_group] == 1)
    k, w = res.added_new[layer.out_group], res.spec.widths[layer.out_group]
    bn = grown.get_submodule(layer.name)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", (i[0].clone(), o.clone())))  # before an in-place ReLU
    c = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach()[w - k:].view(1, k, 1, 1)
    assert torch.allclose(bn.weight[w - k:], bn.weight[: w - k].abs().mean().expand(k))
    x = next(iter(_toy_batches(spec, batch=32, seed=9)()))[0]
    for train_mode in (False, True):
        grown.train(train_mode)
        with torch.no_grad():
            grown(x)
        inp, out = seen["bn"]
        expect = inp[:, w - k:] * c
        err = (out[:, w - k:] - expect).abs()
        if train_mode:  # 32 images' batch statistics instead of the calibration batches'
            assert err.mean() <= 0.25 * expect.std(), family
        else:
            assert err.max() <= 1e-4 * expect.std(), family
    # ...and their output has the siblings' scale (what the BatchNorm weight says), not the raw activations'
    grown.eval()
    with torch.no_grad():
        grown(x)
    out = seen["bn"][1][:, w - k:]
    assert 0.5 < float(out.std(dim=(0, 2, 3)).mean() / bn.weight[: w - k].abs().mean()) < 2.0


@pytest.mark.parametrize("grower", GROWERS)
def test_every_grower_fits_the_budget_and_records_its_choice(grower):
    spec = scaled_spec("resnet18", 0.06)
    torch.manual_seed(0)
    budget = Budget("params", 1.4 * count_params(spec))
    res = grow(build_model(spec), spec, _toy_batches(spec), budget, GrowthConfig(grower=grower, new_ratio=1.0))
    assert count_params(spec) < count_params(res.spec) <= budget.limit
    record = res.to_json(["g"] * len(spec.widths))
    assert record["grower"] == grower
    assert 0 <= record["kept_nonpositive"] <= sum(res.added_split) + sum(res.added_new)
    assert set(record["holdout"]) >= {"loss_before", "loss_after", "predicted_change", "realised_change"}


def test_unknown_grower_is_refused():
    spec = scaled_spec("vgg19", 0.06)
    with pytest.raises(ConfigError, match="unknown grower"):
        grow(build_model(spec), spec, _toy_batches(spec), growth_ratio_budget(spec, 0.5), GrowthConfig(grower="magic"))


class _Sized:
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        return iter(self.data)


def test_streaming_a_sized_source_gives_the_same_growth():
    """With len() the pass streams, keeping only the last batches; the result is the same as from a list."""
    spec = scaled_spec("mobilenet_v1", 0.06)
    data = list(_toy_batches(spec, n=5)())
    results = []
    for source in (lambda: iter(data), lambda: _Sized(data)):
        torch.manual_seed(0)
        results.append(grow(build_model(spec), spec, source, growth_ratio_budget(spec, 0.5), GrowthConfig(grower="firefly", calibrate_batches=2, seed=3)))
    assert results[0].widths_after == results[1].widths_after
    for k in results[0].state_dict:
        assert torch.equal(results[0].state_dict[k], results[1].state_dict[k])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_entries_growth_added_are_found_and_their_gradient_ramps_up(family):
    from gear_trt.train.new_neurons import NewNeuronWarmup, added_entries

    spec = scaled_spec(family, 0.06)
    torch.manual_seed(0)
    res = grow(build_model(spec), spec, _toy_batches(spec), Budget("params", 1.6 * count_params(spec)), GrowthConfig(grower="firefly"))
    grown = build_model(res.spec)
    grown.load_state_dict(res.state_dict)
    masks = added_entries(grown, spec)
    added = sum(int(m.sum()) for m in masks.values())
    assert added == count_params(res.spec) - count_params(spec) > 0
    for name, mask in masks.items():  # the backbone's entries come first in every grown tensor
        assert not mask[tuple(slice(0, n) for n in build_model(spec).get_parameter(name).shape)].any()

    warm = NewNeuronWarmup(grown, masks, epochs=2, steps_per_epoch=5)  # ramps over 10 steps
    for step, factor in ((0, 0.0), (3, 0.3), (10, 1.0)):
        for p in grown.parameters():
            p.grad = torch.full_like(p, 2.0)
        warm(step)
        for name, p in grown.named_parameters():
            expected = torch.where(masks[name], 2.0 * factor, 2.0) if name in masks else torch.full_like(p, 2.0)
            assert torch.allclose(p.grad, expected), (name, step)
