"""steering.steer.plan: an Edit's checks and its edit against the formulas written out here, and
build_plan's rules (which features become edits, in which mode, grouped how)."""

import pytest
import torch

from steering.config import FeatureSpec
from steering.keys import FeatureKey
from steering.steer.plan import Edit, SteeringPlan, build_plan, resolve_strengths
from steering.steer.vectors import SteeringVector

D = 8


def _unit(seed: int) -> torch.Tensor:
    v = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (v / v.norm()).float()


def _reader(w: torch.Tensor):
    return lambda h: torch.relu(h @ w)


H = torch.randn(2, 3, D, generator=torch.Generator().manual_seed(0)) * 3


def test_each_mode_applies_its_formula():
    u, s = _unit(1), 2.5
    h = H.double()
    add = Edit("add", u, s).apply(H)
    torch.testing.assert_close(add, (h + s * u.double()).float())  # float32 result, float64 reference
    clamp = Edit("clamp", u, s).apply(H)
    torch.testing.assert_close(clamp, (h - (h @ u.double()).unsqueeze(-1) * u.double() + s * u.double()).float())
    torch.testing.assert_close(clamp @ u, torch.full((2, 3), s))
    w, norm = _unit(2), 4.0
    pin = Edit("pin", u, s, norm=norm, activation=_reader(w)).apply(H)
    a = torch.relu(h @ w.double())
    torch.testing.assert_close(pin, (h + (s - a).unsqueeze(-1) * (norm * u.double())).float())
    assert add.dtype == clamp.dtype == pin.dtype == H.dtype and add.shape == H.shape


def test_an_edit_keeps_a_bf16_residual_in_bf16():
    out = Edit("add", _unit(1), 1.0).apply(H.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), (H.bfloat16().float() + _unit(1)).bfloat16().float())


def test_unknown_modes_and_a_pin_without_its_rule_are_refused():
    with pytest.raises(ValueError, match="unknown steering mode 'sideways'; use one of add, clamp, pin"):
        Edit("sideways", _unit(1), 1.0)
    with pytest.raises(ValueError, match="pin mode needs the feature's activation rule"):
        Edit("pin", _unit(1), 1.0)


def test_plan_layers_are_sorted_and_skip_empty_ones():
    e = Edit("add", _unit(1), 1.0)
    plan = SteeringPlan({7: [e], 2: [e, e], 4: []})
    assert plan.layers == [2, 7] and not plan.is_empty
    assert SteeringPlan().is_empty and SteeringPlan({3: []}).is_empty
    assert plan.steer_special_tokens and not plan.generated_only


FEATURES = [
    FeatureSpec(layer=5, index=1, label="ocean"),
    FeatureSpec(layer=3, index=2, mode="clamp"),
    FeatureSpec(layer=5, index=3, mode="pin", label="dogs"),
    FeatureSpec(layer=3, index=4),
]
VECTORS = {FeatureKey(f.layer, f.index): SteeringVector(f.layer, f.index, _unit(i), norm=1.0 + i)
           for i, f in enumerate(FEATURES)}
READERS = {FeatureKey(5, 3): _reader(_unit(9))}


def _summary(plan):
    return {layer: [(e.mode, e.strength, e.norm, e.label) for e in edits] for layer, edits in plan.edits.items()}


def test_build_plan_takes_each_features_mode_and_groups_by_layer_in_feature_order():
    strengths = {FeatureKey(5, 1): 10.0, FeatureKey(3, 2): -4.0, FeatureKey(5, 3): 6.0, FeatureKey(3, 4): 1.5}
    plan = build_plan(FEATURES, strengths, VECTORS, READERS)
    assert _summary(plan) == {
        5: [("add", 10.0, 1.0, "ocean"), ("pin", 6.0, 3.0, "dogs")],
        3: [("clamp", -4.0, 2.0, "feature 2 @ layer 3"), ("add", 1.5, 4.0, "feature 4 @ layer 3")],
    }
    assert plan.layers == [3, 5]
    assert torch.equal(plan.edits[5][0].direction, VECTORS[FeatureKey(5, 1)].direction)
    assert plan.edits[5][1].activation is READERS[FeatureKey(5, 3)]


def test_build_plan_leaves_out_switched_off_features_and_a_zero_add():
    strengths = {FeatureKey(5, 1): 0.0, FeatureKey(3, 2): 0.0, FeatureKey(5, 3): None}  # (3, 4) missing: off
    plan = build_plan(FEATURES, strengths, VECTORS, READERS)
    assert _summary(plan) == {3: [("clamp", 0.0, 2.0, "feature 2 @ layer 3")]}  # clamp at 0 removes the feature: kept
    assert build_plan(FEATURES, {}, VECTORS).is_empty


def test_a_request_mode_overrides_every_feature_and_the_default_fills_in():
    strengths = {FeatureKey(5, 1): 2.0, FeatureKey(3, 2): 3.0}
    assert _summary(build_plan(FEATURES, strengths, VECTORS, mode="clamp")) == {
        5: [("clamp", 2.0, 1.0, "ocean")], 3: [("clamp", 3.0, 2.0, "feature 2 @ layer 3")]}
    assert _summary(build_plan(FEATURES, strengths, VECTORS, default_mode="clamp"))[5] == [("clamp", 2.0, 1.0, "ocean")]
    plan = build_plan(FEATURES, strengths, VECTORS, steer_special_tokens=False, generated_only=True)
    assert not plan.steer_special_tokens and plan.generated_only


def test_resolve_strengths_reads_every_spelling_of_a_feature_once():
    feats = [FeatureSpec(layer=15, index=3, strength=10.0, label="ocean"),
             FeatureSpec(layer=15, index=4, strength=20.0, enabled=False)]
    defaults = {FeatureKey(15, 3): 10.0, FeatureKey(15, 4): None}
    assert resolve_strengths(None, feats) == defaults
    assert resolve_strengths({"L15:4": 5}, feats) == {FeatureKey(15, 3): 10.0, FeatureKey(15, 4): 5.0}
    assert resolve_strengths({FeatureKey(15, 3): None, "ocean": 1.5}, feats)[FeatureKey(15, 3)] == 1.5
    assert resolve_strengths({" L15:3 ": 2}, feats)[FeatureKey(15, 3)] == 2.0
    assert resolve_strengths([None, 7], feats) == {FeatureKey(15, 3): None, FeatureKey(15, 4): 7.0}


@pytest.mark.parametrize("strengths, error, message", [
    ({"L15:9": 1.0}, KeyError, r"unknown feature 'L15:9'; known: L15:3, ocean"),
    ({"L15:3": float("inf")}, ValueError, r"strength of L15:3 must be a finite number, got inf"),
    ({"L15:3": "strong"}, ValueError, r"strength of L15:3 must be a finite number, got 'strong'"),
    ({"L15:3": True}, ValueError, r"strength of L15:3 must be a finite number, got True"),
    ([1.0, 2.0], ValueError, r"got 2 strengths for 1 features"),
])
def test_resolve_strengths_names_what_is_wrong(strengths, error, message):
    with pytest.raises(error, match=message):
        resolve_strengths(strengths, [FeatureSpec(layer=15, index=3, label="ocean")])
