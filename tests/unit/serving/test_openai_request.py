"""The OpenAI request's checks: every refusal names the field and the fix; good requests become the engine's terms."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from steering.config import GenerationSettings
from steering.keys import FeatureKey
from steering.serving.openai_request import parse
from steering.service.limits import UserError
from steering.steer.plan import SteeringPlan


class Engine:
    """What `parse` reads of an engine: 30 layers, an SAE of 100 features, the config's defaults."""

    n_layers = 30
    config = SimpleNamespace(generation=GenerationSettings(), model="m", mode="add", sae=object())

    def vector(self, layer, index):
        if index >= 100:
            raise ValueError(f"feature index(es) [{index}] at layer {layer} are outside the SAE in /srv/x (0..99)")

    def plan(self):
        return "defaults"

    def plan_resolved(self, strengths, mode, features, special, generated):
        return SimpleNamespace(strengths=strengths, mode=mode, keys=[f.key for f in features],
                               modes=[f.mode for f in features], conditions=[f.condition for f in features],
                               special=special, generated=generated)


HI = [{"role": "user", "content": "Hi"}]


def test_a_good_request():
    r = parse({"model": "x", "messages": [{"role": "system", "content": "Be brief."}] + HI, "max_tokens": 9,
               "temperature": 0, "seed": 3, "stream": True,
               "steering": {"features": [{"key": "L15:3", "strength": 40, "mode": "clamp"}, {"key": "L2:7", "strength": -1}],
                            "mode": None, "generated_only": True}}, Engine())
    assert r.system_prompt == "Be brief." and r.messages == HI and r.stream and r.model == "x"
    assert (r.settings.max_new_tokens, r.settings.temperature, r.settings.seed) == (9, 0.0, 3)
    assert r.plan.keys == [FeatureKey(15, 3), FeatureKey(2, 7)] and r.plan.modes == ["clamp", None]
    assert r.plan.strengths == {FeatureKey(15, 3): 40.0, FeatureKey(2, 7): -1.0} and r.plan.generated and r.plan.special is None


def test_new_modes_and_a_condition_reach_the_plan():
    from steering.config import Condition

    r = parse({"messages": HI, "steering": {"features": [
        {"key": "L15:3", "strength": 80, "mode": "angular", "condition": {"feature": "L12:9", "above": 1.5}},
        {"key": "L15:4", "strength": 20, "mode": "cap", "condition": None}, {"key": "L15:5", "strength": 9, "mode": "norm_add"}]}},
        Engine())
    assert r.plan.modes == ["angular", "cap", "norm_add"]
    assert r.plan.conditions == [Condition(FeatureKey(12, 9), 1.5), None, None]
    assert r.plan.strengths[FeatureKey(15, 3)] == 80.0


def test_a_condition_on_a_server_without_an_sae_is_refused():
    engine = Engine()
    engine.config = SimpleNamespace(**{**vars(Engine.config), "sae": None})
    with pytest.raises(UserError, match=r"steering.features\[0\].condition: a condition reads a feature by the SAE's encoder"):
        parse({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1,
                                                          "condition": {"feature": "L15:4", "above": 0}}]}}, engine)


def test_absent_steering_is_the_defaults_and_null_or_empty_is_unsteered():
    assert parse({"messages": HI}, Engine()).plan == "defaults"
    for none in (None, {"features": []}, {}):
        plan = parse({"messages": HI, "steering": none}, Engine()).plan
        assert isinstance(plan, SteeringPlan) and plan.is_empty


@pytest.mark.parametrize("body,says", [
    ({"messages": []}, "messages must be a non-empty list"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "messages must end with a user message"),
    ({"messages": HI, "temprature": 1}, "temprature: not read by this server"),
    ({"messages": HI, "max_tokens": 0}, "max_tokens must be a whole number from 1"),
    ({"messages": HI, "temperature": math.inf}, "temperature must be a finite number"),
    ({"messages": HI, "n": 2}, "n must be 1"),
    ({"messages": HI, "stream": "yes"}, "stream must be true or false"),
    ({"messages": HI, "steering": [1]}, "steering must be an object"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": math.nan}]}}, "steering.features[0].strength must be a finite number"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3"}]}}, "steering.features[0].strength must be a finite number, got None"),
    ({"messages": HI, "steering": {"features": [{"key": "L40:3", "strength": 1}]}}, "steering.features[0].key: layer 40 is outside this model (0..29)"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:300", "strength": 1}]}}, "steering.features[0].key: L15:300 cannot be steered here"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1}, {"key": "L15:3", "strength": 2}]}}, "steering.features[1].key: L15:3 is listed twice"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "mode": "boost"}]}}, "steering.features[0].mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap"),
    ({"messages": HI, "steering": {"mode": "steer"}}, "steering.mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap"),
    ({"messages": HI, "steering": {"features": [{"key": f"L1:{i}", "strength": 1} for i in range(33)]}}, "at most 32"),
    ({"messages": HI, "steering": {"feature": []}}, "steering.feature: not a steering field"),
    ({"messages": HI, "steering": {"generated_only": 1}}, "steering.generated_only must be true or false"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "strenght": 2}]}},
     "steering.features[0].strenght: not a feature field (it would be ignored). Use key, strength, mode or condition."),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 200, "mode": "angular"}]}},
     "steering.features[0].strength must be an angle from 0 to 180 degrees for mode angular (90 removes the feature), got 200."),
    ({"messages": HI, "steering": {"mode": "angular_adaptive", "features": [{"key": "L15:3", "strength": -5}]}},
     "steering.features[0].strength must be an angle from 0 to 180 degrees for mode angular_adaptive"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "condition": "L15:4"}]}},
     "steering.features[0].condition must be an object {\"feature\": \"L15:123\", \"above\": 2.0} or null, got 'L15:4'."),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "condition": {"feature": "L15:4"}}]}},
     "steering.features[0].condition.above must be a finite number, got None."),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "condition": {"feature": "dogs", "above": 1}}]}},
     "steering.features[0].condition.feature: 'dogs' is not a feature key"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "condition": {"feature": "L16:4", "above": 1}}]}},
     "steering.features[0].condition.feature: L16:4 is read at layer 16, after the steered layer 15"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1, "condition": {"feature": "L15:400", "above": 1}}]}},
     "steering.features[0].condition.feature: L15:400 cannot be steered here"),
    ({"messages": HI, "steering": {"features": [{"key": "L15:3", "strength": 1,
                                                 "condition": {"feature": "L15:4", "above": 1, "below": 3}}]}},
     "steering.features[0].condition.below: not a condition field (it would be ignored)"),
])
def test_refusals_name_the_field_and_the_fix(body, says):
    with pytest.raises(UserError) as err:
        parse(body, Engine())
    assert says in str(err.value)
    assert "/srv" not in str(err.value)
