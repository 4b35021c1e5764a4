"""DemoService's argument checks, model-free: each endpoint's bad argument is refused by name before the
engine is touched, and visitor_message shows it as it is, with nothing logged."""

import logging
from unittest.mock import MagicMock

import pytest

from steering.config import Condition, FeatureSpec, GenerationSettings
from steering.keys import FeatureKey
from steering.service.demo import DemoService
from steering.service.errors import visitor_message
from steering.service.limits import UserError


@pytest.fixture
def service():
    engine = MagicMock()
    engine.vectors.vectors = {}
    engine.features = [FeatureSpec(layer=15, index=3, strength=0.0), FeatureSpec(layer=15, index=4, strength=0.0)]
    engine.default_strengths.return_value = {"L15:3": 0.0, "L15:4": 0.0}
    engine.config.generation = GenerationSettings()
    return DemoService(engine)


def _refusal(call, caplog) -> str:
    with caplog.at_level(logging.DEBUG, logger="steering.service"), pytest.raises(UserError) as info:
        result = call()
        if hasattr(result, "__next__"):
            next(result)
    shown = visitor_message(info.value)
    assert shown == str(info.value) and not caplog.records
    return shown


@pytest.mark.parametrize("message, history, expected", [
    (None, None, "message must be text, got None."),
    (["hi"], None, "message must be text, got ['hi']."),
    ("hi", "hello", "history must be a list of messages"),
    ("hi", [1, 2], "history[0] must be a message"),
    ("hi", {"role": "user", "content": "x"}, "history must be a list of messages"),
    ("hi", [["hi", "hello"]], "the old [user, assistant] pairs format is not read"),
])
def test_chat_refuses_a_bad_message_or_history(service, caplog, message, history, expected):
    assert expected in _refusal(lambda: service.chat(message, history, service.defaults()), caplog)
    service.engine.request.assert_not_called()


@pytest.mark.parametrize("strengths, add, expected", [
    ({"L99:1": 1.0}, None, "strengths names L99:1, which is not a feature here. The features are L15:3, L15:4;"),
    ({"L15:999999999": 1.0}, None, "strengths names L15:999999999, which is not a feature here."),
    ({"garbage": 1.0}, None, "strengths: 'garbage' is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    ([1, 2], None, "strengths must be an object of feature key -> strength"),
    ("L15:3", None, "strengths must be an object of feature key -> strength"),
    (None, [3], "add_features[0]: 3 is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
])
def test_api_setup_refuses_strengths_that_would_steer_nothing(service, caplog, strengths, add, expected):
    assert expected in _refusal(lambda: service.setup_from_api(strengths, "own", add, None, None, None, None, None), caplog)


def test_api_setup_takes_a_strength_for_a_feature_it_adds(service):
    setup = service.setup_from_api({"L15:9": 5.0}, None, ["L15:9"], 8.0, None, None, None, -1)
    assert setup.strengths[(15, 9)] == 5.0 and setup.generation.max_new_tokens == 8 and setup.generation.seed is None


@pytest.mark.parametrize("call, expected", [
    (lambda s: s.inspect(None), "prompt must be text, got None."),
    (lambda s: s.inspect("sea", n="x"), "top_n must be a whole number from 1 to 50, got 'x'."),
    (lambda s: s.inspect("sea", n=float("nan")), "top_n must be a whole number from 1 to 50, got nan."),
    (lambda s: s.differential(None, "b"), "positive must be text, got None."),
    (lambda s: s.differential("a", ["b"]), "negative must be text, got ['b']."),
    (lambda s: s.differential("a", "b", n=float("inf")), "top_n must be a whole number from 1 to 100, got inf."),
    (lambda s: s.scan(None, 3), "prompts must be text, got None."),
    (lambda s: s.scan("sea", "x"), "feature must be a whole number, got 'x'."),
    (lambda s: s.concept_search(None), "concept must be text, got None."),
    (lambda s: s.concept_search("the ocean", "5"), "top_n must be a whole number from 1 to 50, got '5'."),
])
def test_inspector_endpoints_refuse_bad_arguments_by_name(service, caplog, call, expected):
    assert _refusal(lambda: call(service), caplog) == expected
    service.engine.inspect.assert_not_called()
    service.engine.differential.assert_not_called()
    service.engine.encode_prompts.assert_not_called()


@pytest.fixture
def moded(service):
    """Two features, one configured for add with a slider range, one for an angle."""
    engine = service.engine
    engine.features = [FeatureSpec(layer=15, index=3, strength=30.0, mode="add", range=(0.0, 120.0)),
                       FeatureSpec(layer=15, index=4, strength=80.0, mode="angular", range=(60.0, 90.0))]
    engine.config.mode = "add"
    engine.config.feature_mode = lambda f: f.mode or "add"
    engine.sae_width.return_value = 100
    return service


def test_a_visitors_mode_of_another_unit_drops_the_range_and_fits_the_strength(moded):
    from steering.service.setup import SteeringSetup

    setup = SteeringSetup(strengths={"L15:3": 30.0, "L15:4": 80.0}, modes={"L15:3": "angular_adaptive", "L15:4": "cap"})
    a, b = moded.features_for(setup)
    assert (a.mode, a.range, a.strength) == ("angular_adaptive", None, 30.0)
    assert (b.mode, b.range, b.strength) == ("cap", None, 80.0)
    assert moded.slider_range(a) == (0.0, 180.0)
    same_unit = moded.features_for(SteeringSetup(modes={"L15:3": "cap", "L15:4": "angular_adaptive"}))
    assert [f.range for f in same_unit] == [(0.0, 120.0), (60.0, 90.0)]  # a range stays for a mode of its own unit


def test_validated_brings_angles_inside_0_to_180_with_a_notice(moded):
    from steering.service.setup import SteeringSetup

    setup, notices = moded.validated(SteeringSetup(strengths={"L15:3": 250.0, "L15:4": 75.0}, mode="angular"))
    assert setup.strengths[FeatureKey(15, 3)] == 180.0 and setup.strengths[FeatureKey(15, 4)] == 75.0
    assert notices == ["The strength of feature 3 @ layer 15 (250) was outside its range [0, 180] and was set to 180."]


@pytest.mark.parametrize("condition, sae, expected", [
    (Condition(FeatureKey(16, 1), 1.0), True, "The condition on L15:3 reads L16:1 at layer 16, after the steered layer 15"),
    (Condition(FeatureKey(15, 100), 1.0), True, "The condition on L15:3 reads L15:100, outside the SAE of layer 15: use 0 to 99."),
    (Condition(FeatureKey(15, 5), 1.0), False, "The condition on L15:3 reads L15:5 by the SAE's encoder, and this demo has no SAE"),
])
def test_a_condition_this_demo_cannot_read_is_refused(moded, caplog, condition, sae, expected):
    from steering.service.setup import SteeringSetup

    moded.engine.config.sae = object() if sae else None
    setup = SteeringSetup(strengths={"L15:3": 30.0}, conditions={"L15:3": condition})
    assert expected in _refusal(lambda: moded.validated(setup), caplog)
