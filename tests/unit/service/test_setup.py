"""steering.service.setup and links: share links (round trip, warnings, size limit), named-API calls and feature keys; exact expectations."""

import pytest

from steering.config import Condition, GenerationSettings
from steering.keys import FeatureKey
from steering.service.limits import UserError
from steering.service.links import MAX_QUERY_CHARS, from_query, to_query
from steering.service.setup import ModeChoice, SteeringSetup, from_api, parse_key

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


@pytest.mark.parametrize("params, part, why", [
    ({"s": "L15:3=abc"}, "s=L15:3=abc", "the strength of L15:3 must be a finite number or off, got 'abc'"),
    ({"s": "L15:3=nan"}, "s=L15:3=nan", "must be a finite number or off, got 'nan'"),
    ({"s": "L15:3=inf"}, "s=L15:3=inf", "must be a finite number or off, got 'inf'"),
    ({"s": "L15:3="}, "s=L15:3=", "must be a finite number or off, got ''"),
    ({"s": "L15:3"}, "s=L15:3", "write = and a value after the feature key, e.g. s=L15:3=40"),
    ({"s": "L99:3=1"}, "s=L99:3=1", "layer 99 does not exist: this model has layers 0 to 29"),
    ({"s": "L15:999=1"}, "s=L15:999=1", "feature 999 does not exist: this SAE has features 0 to 255"),
    ({"s": "L15:99999999=50"}, "s=L15:99999999=50", "feature 99999999 does not exist: this SAE has features 0 to 255"),
    ({"s": "L15:7=50"}, "s=L15:7=50", "L15:7 is not a feature of this page; add it with add=L15:7 first"),
    ({"s": "15:3=1"}, "s=15:3=1", "'15:3' is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123"),
    ({"s": "\x00\ufffd"}, "s=\x00\ufffd", "'\\x00\ufffd' is not a feature key: write L, the layer"),
    ({"add": "L1.5:3"}, "add=L1.5:3", "'L1.5:3' is not a feature key"),
    ({"m": "L15:3=sideways"}, "m=L15:3=sideways", "the mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, got 'sideways'"),
    ({"m": "L15:3=clamp;x=1"}, "m=L15:3=clamp;x=1", "mode clamp takes no parameters, got 'x=1'"),
    ({"mode": "sideways"}, "mode=sideways", "the mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap or own"),
    ({"tokens": "-5"}, "tokens=-5", "tokens must be a whole number from 1 to 16384, got -5"),
    ({"tokens": "0"}, "tokens=0", "tokens must be a whole number from 1 to 16384, got 0"),
    ({"tokens": "many"}, "tokens=many", "tokens must be a whole number from 1 to 16384, got 'many'"),
    ({"temp": "-1"}, "temp=-1", "temp must be a finite number from 0 to 2 (0 is greedy), got -1"),
    ({"temp": ""}, "temp=", "temp must be a finite number from 0 to 2 (0 is greedy), got ''"),
    ({"top_p": "2"}, "top_p=2", "top_p must be a finite number > 0 and <= 1"),
    ({"rep": "0"}, "rep=0", "rep must be a finite number > 0 and <= 2"),
    ({"seed": "1.5"}, "seed=1.5", "seed must be a whole number from -1 to 9223372036854775807"),
    ({"compare": "yes"}, "compare=yes", "compare must be 1 (show the unsteered answer) or 0"),
    ({"sd": "L15:3=4"}, "sd=L15:3=4", "it is not a share link parameter (they are s, m, c, mode, add, cv, tokens, temp, top_p, rep, seed, compare)"),
    ({"c": "L15:3=L15:9"}, "c=L15:3=L15:9", "write FEATURE>THRESHOLD after the feature key, e.g. c=L15:3=L15:9>2.5, or none"),
    ({"c": "L15:3=L16:9>1"}, "c=L15:3=L16:9>1", "L16:9 is read at layer 16, after the steered layer 15"),
    ({"c": "L15:3=L15:9>x"}, "c=L15:3=L15:9>x", "the threshold must be a finite number, got 'x'"),
    ({"c": "L15:3=L15:999>1"}, "c=L15:3=L15:999>1", "feature 999 does not exist: this SAE has features 0 to 255"),
])
def test_each_bad_part_is_named_in_the_pages_words_and_the_defaults_kept(params, part, why):
    setup, warnings = from_query(params, DEFAULTS, n_layers=30, d_sae=256)
    assert setup == DEFAULTS
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"The share link's {part!r}"[:40]) and why in warnings[0] and warnings[0].endswith(".")
    assert "Traceback" not in warnings[0] and "could not convert" not in warnings[0]


def test_good_parameters_survive_beside_bad_ones():
    setup, warnings = from_query({"s": "L15:3=12", "mode": "nope", "temp": "0.3", "__theme": "dark"}, DEFAULTS, 30, 256)
    assert setup.strengths[FeatureKey(15, 3)] == 12.0 and setup.generation.temperature == 0.3 and setup.mode is None
    assert len(warnings) == 1 and "mode" in warnings[0]


def test_each_bad_item_of_a_list_is_named_and_the_good_ones_kept():
    setup, warnings = from_query({"s": "L15:3=12,L15:99999999=50,L15:4=x,L15:4=off"}, DEFAULTS, 30, 256)
    assert setup.strengths == {FeatureKey(15, 3): 12.0, FeatureKey(15, 4): None}
    assert len(warnings) == 2 and "L15:99999999" in warnings[0] and "'x'" in warnings[1]


def test_a_strength_for_an_added_feature_needs_it_added():
    setup, warnings = from_query({"add": "L15:7", "s": "L15:7=5", "m": "L15:7=pin"}, DEFAULTS, 30, 256)
    assert warnings == [] and setup.strengths[FeatureKey(15, 7)] == 5.0 and setup.modes[FeatureKey(15, 7)] == ModeChoice("pin")


def test_per_feature_modes_round_trip_and_a_configured_mode_is_not_written():
    configured = {FeatureKey(15, 3): "add", FeatureKey(15, 4): "clamp"}
    setup = SteeringSetup(strengths=DEFAULTS.strengths, modes={"L15:3": "pin", "L15:4": "clamp"})
    query = to_query(setup, DEFAULTS, configured.__getitem__)
    assert query == "m=L15:3=pin"
    got, warnings = from_query({"m": "L15:3=pin"}, DEFAULTS, 30, 256)
    assert warnings == [] and got.mode_of(FeatureKey(15, 3), "add") == ModeChoice("pin")
    assert got.mode_of(FeatureKey(15, 4), "clamp") == ModeChoice("clamp")


def test_a_features_own_mode_wins_over_the_mode_for_all():
    setup = SteeringSetup(mode="clamp", modes={"L15:3": "pin"})
    assert setup.mode_of(FeatureKey(15, 3), "add").mode == "pin" and setup.mode_of(FeatureKey(15, 4), "add").mode == "clamp"
    assert SteeringSetup().mode_of(FeatureKey(15, 4), "add").mode == "add"


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


NAMES = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")


def _api(strengths=None, mode="own", add=None, generation=(None,) * 5, modes=None):
    return from_api(DEFAULTS, _known, strengths, mode, add, dict(zip(NAMES, generation)), modes)


def test_api_arguments_left_unset_keep_the_defaults():
    assert _api() == DEFAULTS
    assert _api(mode=None) == DEFAULTS
    setup = _api({"L15:4": None, "L15:99": 2.5}, "clamp", ["L15:99"], (8, 0.0, None, None, 5))
    assert setup.strengths == {FeatureKey(15, 3): 0.0, FeatureKey(15, 4): None, FeatureKey(15, 99): 2.5}
    assert setup.mode == "clamp" and setup.custom == (FeatureKey(15, 99),)
    assert setup.generation == GenerationSettings(8, 0.0, DEFAULTS.generation.top_p, DEFAULTS.generation.repetition_penalty, 5)
    setup = _api(mode="clamp", modes={"L15:3": "pin", "L15:4": {"mode": "add"}})
    assert setup.mode == "clamp" and setup.modes == {FeatureKey(15, 3): ModeChoice("pin"), FeatureKey(15, 4): ModeChoice("add")}


def test_api_strength_objects_set_a_features_own_mode_and_condition():
    setup = _api({"L15:3": {"strength": 70, "mode": "angular_adaptive", "condition": {"feature": "L15:9", "above": 1}},
                  "L15:4": {"strength": None, "condition": None}})
    assert setup.strengths == {FeatureKey(15, 3): 70.0, FeatureKey(15, 4): None} and setup.mode is None
    assert setup.modes == {FeatureKey(15, 3): ModeChoice("angular_adaptive")}
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
    ({"generation": (None, None, None, None, "abc")}, "seed must be a whole number from -1 to 9223372036854775807 (-1 for a random seed each time), got 'abc'."),
    ({"generation": ("8", None, None, None, None)}, "max_new_tokens must be a whole number from 1 to 16384, got '8'."),
    ({"generation": (None, float("inf"), None, None, None)}, "temperature must be a finite number from 0 to 2 (0 is greedy), got inf."),
    ({"generation": (None, None, float("nan"), None, None)}, "top_p must be a finite number > 0 and <= 1 (1 turns nucleus sampling off), got nan."),
    ({"modes": {"L15:3": "sideways"}}, "modes['L15:3'] must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, got 'sideways'."),
    ({"modes": {"L15:3": {"mode": "clamp", "above": 2}}}, "modes['L15:3']: mode clamp takes no parameters, got {'above': 2}. Remove them."),
    ({"modes": {"L15:9": "clamp"}}, "modes names L15:9, which is not a feature here."),
    ({"modes": ["clamp"]}, "modes must be an object of feature key -> mode"),
])
def test_bad_api_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(UserError) as info:
        _api(**kwargs)
    assert message in str(info.value)
