"""steering.steer.plan: an Edit's checks and its edit against the formulas written out here, and
build_plan's rules (which features become edits, in which mode, grouped how)."""

import pytest
import torch

from steering.config import Condition, FeatureSpec
from steering.keys import FeatureKey
from steering.steer.plan import Edit, Gate, SteeringPlan, build_plan, resolve_strengths
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
    with pytest.raises(ValueError, match="unknown steering mode 'sideways'; use one of add, clamp, pin, norm_add, angular, angular_adaptive, cap"):
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


def test_the_new_modes_apply_their_math_functions_and_angles_are_checked():
    from steering.steer import math as steer_math

    u = _unit(1)
    for mode, s in (("norm_add", 3.0), ("angular", 75.0), ("angular_adaptive", 75.0), ("cap", 2.0)):
        assert torch.equal(Edit(mode, u, s).apply(H), getattr(steer_math, mode)(H, u, s)), mode
    for bad in (-1.0, 180.5):
        with pytest.raises(ValueError, match=rf"strength {bad} is an angle for mode angular and must lie from 0 to 180"):
            Edit("angular", u, bad)


def test_build_plan_drops_only_the_zero_strengths_that_change_nothing():
    feats = [FeatureSpec(layer=5, index=i, mode=m) for i, m in enumerate(("norm_add", "cap", "angular", "add"))]
    vectors = {f.key: SteeringVector(5, f.index, _unit(f.index), 1.0) for f in feats}
    plan = build_plan(feats, {f.key: 0.0 for f in feats}, vectors)
    assert [e.mode for e in plan.edits[5]] == ["cap", "angular"]  # cap 0 and angle 0 are real edits


def test_a_condition_becomes_a_gate_read_at_its_own_layer():
    cond_reader = _reader(_unit(7))
    feats = [FeatureSpec(layer=5, index=1, mode="cap", condition=Condition(FeatureKey(3, 9), 0.5)),
             FeatureSpec(layer=5, index=2, condition=Condition(FeatureKey(5, 9), 1.0))]
    vectors = {f.key: SteeringVector(5, f.index, _unit(f.index), 1.0) for f in feats}
    readers = {FeatureKey(3, 9): cond_reader, FeatureKey(5, 9): _reader(_unit(8))}
    plan = build_plan(feats, {f.key: 2.0 for f in feats}, vectors, readers)
    gate = plan.edits[5][0].gate
    assert (gate.key, gate.above, gate.activation) == (FeatureKey(3, 9), 0.5, cond_reader)
    assert plan.layers == [5] and plan.hooked_layers == [3, 5]
    assert list(plan.gates_read_at(3)) == [FeatureKey(3, 9)] and list(plan.gates_read_at(5)) == [FeatureKey(5, 9)]
    assert not plan.gates_read_at(4)


def test_a_condition_read_after_the_steered_layer_is_refused():
    gate = Gate(FeatureKey(6, 1), 0.0, _reader(_unit(2)))
    with pytest.raises(ValueError, match="the condition on L6:1 is read at layer 6, after the steered layer 5"):
        SteeringPlan({5: [Edit("add", _unit(1), 1.0, gate=gate)]})
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        Gate(FeatureKey(1, 1), float("nan"), _reader(_unit(2)))
