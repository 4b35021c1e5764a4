"""steering.service.setup: share links (round trip, warnings, size limit), named-API calls and feature keys; exact expectations."""

import pytest

from steering.config import Condition, GenerationSettings
from steering.keys import FeatureKey
from steering.service.limits import UserError
from steering.service.setup import (
    MAX_QUERY_CHARS,
    SteeringSetup,
    from_api,
    from_query,
    parse_key,
    to_query,
)

DEFAULTS = SteeringSetup(strengths={"L15:3": 0.0, "L15:4": 10.0}, generation=GenerationSettings())


def _round_trip(setup):
    from urllib.parse import parse_qsl

    return from_query(dict(parse_qsl(to_query(setup, DEFAULTS))), DEFAULTS, n_layers=30, d_sae=256)


def test_link_round_trip_reproduces_the_setup():
    setup = SteeringSetup(
        strengths={"L15:3": 40.0, "L15:4": None, "L12:99": -7.5},
        mode="clamp",
        custom=((12, 99),),
        generation=GenerationSettings(max_new_tokens=100, temperature=0.0, top_p=0.5, repetition_penalty=1.3, seed=None),
        compare=True,
    )
    got, warnings = _round_trip(setup)
    assert warnings == []
    assert got == setup


def test_link_round_trip_carries_each_features_mode_and_condition():
    setup = SteeringSetup(strengths={"L15:3": 80.0, "L15:4": 10.0}, generation=GenerationSettings(),
                          modes={"L15:3": "angular", "L15:4": "cap"},
                          conditions={"L15:3": Condition(FeatureKey(12, 7), 2.5), "L15:4": None})
    got, warnings = _round_trip(setup)
    assert warnings == [] and got == setup
    assert "m=L15:3=angular,L15:4=cap" in to_query(setup, DEFAULTS)


def test_link_names_only_what_differs():
    assert to_query(DEFAULTS, DEFAULTS) == ""
    q = to_query(SteeringSetup(strengths={"L15:3": 40.0, "L15:4": 10.0}, generation=GenerationSettings()), DEFAULTS)
    assert q == "s=L15:3=40"


@pytest.mark.parametrize("params, name, why", [
    ({"s": "L15:3=abc"}, "s", "could not convert"),
    ({"s": "L15:3=nan"}, "s", "not a finite number"),
    ({"s": "L15:3=inf"}, "s", "not a finite number"),
    ({"s": "L99:3=1"}, "s", "layer 99 is outside this model (0..29)"),
    ({"s": "L15:999=1"}, "s", "feature 999 is outside the SAE (0..255)"),
    ({"s": "15:3=1"}, "s", "is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123"),
    ({"add": "L1.5:3"}, "add", "is not a feature key"),
    ({"mode": "sideways"}, "mode", "use one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, own"),
    ({"tokens": "-5"}, "tokens", "is not a whole number"),
    ({"tokens": "0"}, "tokens", "max_new_tokens"),
    ({"temp": "-1"}, "temp", "temperature"),
    ({"top_p": "2"}, "top_p", "top_p"),
    ({"seed": "1e9"}, "seed", "is not a whole number"),
    ({"compare": "yes"}, "compare", "use 1 or 0"),
    ({"m": "L15:3=spin"}, "m", "'spin' is not a mode; use one of add, clamp, pin, norm_add, angular, angular_adaptive, cap"),
    ({"c": "L15:3=L15:9"}, "c", "is not a condition; write FEATURE>THRESHOLD, e.g. L15:9>2.5, or none"),
    ({"c": "L15:3=L16:9>1"}, "c", "L16:9 is read after the steered layer 15"),
    ({"c": "L15:3=L15:9>x"}, "c", "could not convert"),
    ({"c": "L15:3=L15:999>1"}, "c", "feature 999 is outside the SAE"),
])
def test_bad_parameters_warn_and_keep_the_defaults(params, name, why):
    setup, warnings = from_query(params, DEFAULTS, n_layers=30, d_sae=256)
    assert setup == DEFAULTS
    assert len(warnings) == 1 and f"parameter {name}=" in warnings[0] and why in warnings[0]


def test_good_parameters_survive_beside_bad_ones():
    setup, warnings = from_query({"s": "L15:3=12", "mode": "nope", "temp": "0.3", "__theme": "dark"}, DEFAULTS, 30, 256)
    assert setup.strengths[FeatureKey(15, 3)] == 12.0 and setup.generation.temperature == 0.3 and setup.mode is None
    assert len(warnings) == 1 and "mode" in warnings[0]


def test_oversized_link_is_refused_whole():
    setup, warnings = from_query({"s": "L15:3=1," * 400}, DEFAULTS, 30, 256)
    assert setup == DEFAULTS and f"limit {MAX_QUERY_CHARS}" in warnings[0]


def test_parse_key():
    assert parse_key("L15:123") == (15, 123)
    with pytest.raises(ValueError, match="not a feature key"):
        parse_key("L15-123")


# ---- named-API calls ---------------------------------------------------------------------------

def _known(added):
    return [FeatureKey(15, 3), FeatureKey(15, 4), *added]


def _api(strengths=None, mode="own", add=None, generation=(None,) * 5):
    return from_api(DEFAULTS, _known, strengths, mode, add, generation)


def test_api_arguments_left_unset_keep_the_defaults():
    assert _api() == DEFAULTS
    assert _api(mode=None) == DEFAULTS
    setup = _api({"L15:4": None, "L15:99": 2.5}, "clamp", ["L15:99"], (8, 0.0, None, None, 5))
    assert setup.strengths == {FeatureKey(15, 3): 0.0, FeatureKey(15, 4): None, FeatureKey(15, 99): 2.5}
    assert setup.mode == "clamp" and setup.custom == (FeatureKey(15, 99),)
    assert setup.generation == GenerationSettings(8, 0.0, DEFAULTS.generation.top_p, DEFAULTS.generation.repetition_penalty, 5)


def test_api_strength_objects_set_a_features_own_mode_and_condition():
    setup = _api({"L15:3": {"strength": 70, "mode": "angular_adaptive", "condition": {"feature": "L15:9", "above": 1}},
                  "L15:4": {"strength": None, "condition": None}})
    assert setup.strengths == {FeatureKey(15, 3): 70.0, FeatureKey(15, 4): None} and setup.mode is None
    assert setup.modes == {FeatureKey(15, 3): "angular_adaptive"}
    assert setup.conditions == {FeatureKey(15, 3): Condition(FeatureKey(15, 9), 1.0), FeatureKey(15, 4): None}
    assert _api({"L15:3": {"strength": 170}}, mode="angular").strengths[FeatureKey(15, 3)] == 170.0


@pytest.mark.parametrize("kwargs, message", [
    ({"strengths": {"L15:3": {"strength": 1, "mode": "cap"}}, "mode": "clamp"},
     "strengths['L15:3'].mode: mode 'clamp' is set for every feature, which would override this one. Send mode \"own\""),
    ({"strengths": {"L15:3": {"strength": 190, "mode": "angular"}}},
     "strengths['L15:3'].strength must be an angle from 0 to 180 degrees for mode angular (90 removes the feature), got 190."),
    ({"strengths": {"L15:3": {"strength": -1}}, "mode": "angular"}, "strengths['L15:3'].strength must be an angle from 0 to 180"),
    ({"strengths": {"L15:3": {"strength": 1, "mod": "cap"}}},
     "strengths['L15:3'].mod: not a feature setting (it would be ignored). Use strength, mode or condition."),
    ({"strengths": {"L15:3": {"strength": 1, "mode": "spin"}}}, "strengths['L15:3'].mode must be one of add, clamp"),
    ({"strengths": {"L15:3": {"strength": 1, "condition": {"feature": "L20:1", "above": 0}}}},
     "strengths['L15:3'].condition.feature: L20:1 is read at layer 20, after the steered layer 15"),
    ({"strengths": {"L15:3": {"strength": 1, "condition": {"feature": "L15:1", "above": "high"}}}},
     "strengths['L15:3'].condition.above must be a finite number, got 'high'."),
])
def test_bad_feature_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(UserError) as info:
        _api(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("strengths", [{"L99:1": 1.0}, {"L15:999999999": 1.0}, {"L15:3": 1.0, "L15:5": 2.0}])
def test_api_strength_for_a_feature_not_here_is_refused_naming_the_valid_ones(strengths):
    with pytest.raises(UserError) as info:
        _api(strengths)
    unknown = next(k for k in strengths if k not in ("L15:3", "L15:4"))
    assert str(info.value) == (f"strengths names {unknown}, which is not a feature here. The features are L15:3, L15:4; "
                               "add a feature with add_features first.")


@pytest.mark.parametrize("kwargs, message", [
    ({"strengths": {"garbage": 1}}, "strengths: 'garbage' is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    ({"strengths": [1, 2]}, "strengths must be an object of feature key -> strength"),
    ({"strengths": "L15:3"}, "strengths must be an object of feature key -> strength"),
    ({"add": [3]}, "add_features[0]: 3 is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    ({"add": 3}, "add_features must be a list of feature keys"),
    ({"mode": "bogus"}, "mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, own, got 'bogus'."),
    ({"mode": 3}, "mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, own, got 3."),
    ({"generation": (None, None, None, None, "abc")}, "seed must be a whole number (-1 for a random seed), got 'abc'."),
    ({"generation": ("8", None, None, None, None)}, "max_new_tokens must be a whole number >= 1, got '8'."),
    ({"generation": (None, float("inf"), None, None, None)}, "temperature must be a finite number >= 0, got inf."),
    ({"generation": (None, None, float("nan"), None, None)}, "top_p must be a finite number > 0 and <= 1, got nan."),
])
def test_bad_api_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(UserError) as info:
        _api(**kwargs)
    assert message in str(info.value)
