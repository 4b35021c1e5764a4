"""The nnsight backend produces exactly the hooks backend's greedy text for the same steering."""

import pytest
import torch

from steering.config import DemoConfig, GenerationSettings
from steering.engine import Engine
from steering.backends.nnsight import NNsightRunner
from steering.model.embedded import EMBEDDED_MODEL
from steering.keys import FeatureKey
from steering.steer.plan import Edit, Gate, SteeringPlan
from steering.steer.vectors import VectorSet
from tests.helpers import random_sae

pytest.importorskip("nnsight", reason="CI installs nnsight (requirements-dev.txt); this module tests it")

GREEDY = GenerationSettings(max_new_tokens=16, temperature=0.0, repetition_penalty=1.0)


HOOKS, NNSIGHT = "hooks", "nnsight"


@pytest.fixture(scope="module")
def engines(smollm2):
    """One engine per backend on the same model: the same decoder loop, steered by hooks or by nnsight."""
    made = {b: Engine.for_model(DemoConfig(model=EMBEDDED_MODEL, backend=b), *smollm2, VectorSet(EMBEDDED_MODEL, {})) for b in (HOOKS, NNSIGHT)}
    yield made
    for e in made.values():
        e.close()


def _text(backend, engines, plan, prompt="Tell me about the sea.", settings=GREEDY):
    return "".join(engines[backend].stream(prompt, plan=plan or SteeringPlan(), settings=settings))


def _unit(seed):
    v = torch.randn(576, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


PIN_SAE = random_sae(576, 16, "jumprelu", seed=3, layer=12)
PLANS = {
    "add on two layers": SteeringPlan({10: [Edit("add", _unit(1), 40.0)], 15: [Edit("add", _unit(2), 60.0)]}),
    "clamp, two features on one layer": SteeringPlan({15: [Edit("clamp", _unit(3), 30.0), Edit("clamp", _unit(4), -20.0)]}),
    "pin": SteeringPlan({12: [Edit("pin", PIN_SAE.W_dec[5] / PIN_SAE.W_dec[5].norm(), 40.0, float(PIN_SAE.W_dec[5].norm()), PIN_SAE.feature_rule(5).activation)]}),
    "norm_add, then cap where a layer-12 feature fires": SteeringPlan({
        12: [Edit("norm_add", _unit(5), 60.0)],
        15: [Edit("cap", _unit(6), 50.0, gate=Gate(FeatureKey(12, 5), 0.0, PIN_SAE.feature_rule(5).activation))]}),
    "angular_adaptive": SteeringPlan({15: [Edit("angular_adaptive", -_unit(7), 60.0)]}),  # most positions lean toward it
}


@pytest.mark.parametrize("name", list(PLANS))
def test_same_greedy_text_as_hooks(engines, name):
    hooks = _text(HOOKS, engines, PLANS[name])
    assert hooks != _text(HOOKS, engines, None)  # the steering does change the text
    assert _text(NNSIGHT, engines, PLANS[name]) == hooks


def test_unsteered_and_early_end(engines):
    s = GenerationSettings(max_new_tokens=60, temperature=0.0, repetition_penalty=1.0)
    prompt = "What is the capital of France? Answer in one word."
    assert _text(NNSIGHT, engines, None, prompt, s) == _text(HOOKS, engines, None, prompt, s)


def test_seeded_sampling_matches(engines):
    s = GenerationSettings(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=5)
    assert _text(NNSIGHT, engines, PLANS["add on two layers"], settings=s) == _text(HOOKS, engines, PLANS["add on two layers"], settings=s)


def test_position_options_are_refused_with_a_reason(engines):
    plan = SteeringPlan({15: [Edit("add", _unit(1), 5.0)]}, generated_only=True)
    with pytest.raises(ValueError, match="need backend: hooks"):
        _text(NNSIGHT, engines, plan)


def test_config_backend_selects_nnsight_through_the_session(smollm2, tmp_path):
    from dataclasses import replace

    from steering.config import load_config
    from steering.steer.vectors import vectors_for_config
    from tests.conftest import write_test_demo

    config = load_config(write_test_demo(tmp_path))
    hooks = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    nn = Engine.for_model(replace(config, backend="nnsight"), *smollm2, hooks.vectors, batching=True, log=lambda m: None)
    assert isinstance(nn.backend.decoder.runner, NNsightRunner) and not nn.batcher.batching  # nnsight steers a batch with one plan
    first = nn.stream("Hi")
    first.stop()
    kwargs = dict(strengths={"L15:3": 80.0}, settings=GREEDY)
    assert nn.chat("Tell me about the sea.", **kwargs) == hooks.chat("Tell me about the sea.", **kwargs)


def test_concurrent_requests_take_turns(engines):
    import threading

    results = {}

    def run(name, plan):
        results[name] = _text(NNSIGHT, engines, plan)

    threads = [threading.Thread(target=run, args=(n, PLANS[n])) for n in ("add on two layers", "pin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == {n: _text(HOOKS, engines, PLANS[n]) for n in results} and len(results) == 2
