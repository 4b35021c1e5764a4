"""DemoService's argument checks, model-free: each endpoint's bad argument is refused by name before the
engine is touched, and visitor_message shows it as it is, with nothing logged."""

import logging
from unittest.mock import MagicMock

import pytest

from steering.config import FeatureSpec, GenerationSettings
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
