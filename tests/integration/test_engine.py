"""steering/engine.py on the real SmolLM2: one owner, built with its options, and `close()` undoes everything."""

import queue

import pytest

from steering.config import GenerationSettings, load_config
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.model.embedded import EMBEDDED_MODEL
from steering.model.layers import decoder_layers
from steering.model.loading import load_model
from steering.steer.plan import SteeringPlan
from steering.steer.vectors import vectors_for_config
from tests.conftest import write_test_demo

GREEDY = GenerationSettings(max_new_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return load_config(write_test_demo(tmp_path_factory.mktemp("engine")))


@pytest.fixture(scope="module")
def own_model():
    """A SmolLM2 of this module's own: the session's shared copy carries other tests' hooks."""
    return load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")


def _hook_counts(model):
    return [len(layer._forward_hooks) for layer in decoder_layers(model)]


def _patched(model):
    return "forward" in vars(model.lm_head)


def test_close_detaches_every_hook_and_undoes_every_patch(own_model, config):
    model, tokenizer = own_model
    before = _hook_counts(model)
    engine = Engine.for_model(config, model, tokenizer, vectors_for_config(config, log=lambda m: None), batching=True)
    assert _hook_counts(model) == [n + 1 for n in before] and _patched(model)
    assert "".join(engine.stream("Hi", settings=GREEDY))
    engine.close()
    assert _hook_counts(model) == before and not _patched(model)
    assert "_steering_hooks" not in vars(model)


def test_with_block_closes_and_a_second_engine_keeps_its_hooks(own_model, config):
    model, tokenizer = own_model
    vectors = vectors_for_config(config, log=lambda m: None)
    with Engine.for_model(config, model, tokenizer, vectors) as outer:
        plan = outer.plan({"L15:3": 150.0})
        steered = "".join(outer.stream("Hi", plan=plan, settings=GREEDY))
        with Engine.for_model(config, model, tokenizer, vectors):
            pass
        assert "".join(outer.stream("Hi", plan=plan, settings=GREEDY)) == steered  # still steered after the inner close
        assert steered != "".join(outer.stream("Hi", plan=SteeringPlan(), settings=GREEDY))
    assert "_steering_hooks" not in vars(model)


def test_strengths_by_text_key_feature_key_label_or_position_mean_the_same(smollm2, config):
    model, tokenizer = smollm2
    with Engine.for_model(config, model, tokenizer, vectors_for_config(config, log=lambda m: None)) as engine:
        a = engine.plan({"L15:3": 30.0, "L15:4": None})
        b = engine.plan({FeatureKey(15, 3): 30.0, FeatureKey(15, 4): None})
        c = engine.plan({"test direction A": 30.0, " L15:4 ": None})
        d = engine.plan([30.0, None])
        summary = [[(e.mode, e.strength, e.label) for e in p.edits[15]] for p in (a, b, c, d)]
        assert summary[0] == summary[1] == summary[2] == summary[3] == [("add", 30.0, "test direction A")]
        assert [(e.mode, e.strength) for e in engine.plan({"L15:3": 30.0}).edits[15]] == [("add", 30.0), ("clamp", 0.0)]
        with pytest.raises(KeyError, match=r"unknown feature 'L15:999'; known: L15:3, L15:4"):
            engine.plan({"L15:999": 1.0})
        with pytest.raises(ValueError, match=r"strength of L15:3 must be a finite number, got nan"):
            engine.plan({"L15:3": float("nan")})
        with pytest.raises(ValueError, match="got 1 strengths for 2 features"):
            engine.plan([1.0])


def test_active_requests_count_rows_until_each_ends(smollm2, config):
    model, tokenizer = smollm2
    with Engine.for_model(config, model, tokenizer, vectors_for_config(config, log=lambda m: None)) as engine:
        events = queue.SimpleQueue()
        long = GenerationSettings(max_new_tokens=200, temperature=0.0)
        pair = [engine.request("Tell me a long story.", None, long, events=events, tag=i) for i in (0, 1)]
        stream = engine.stream_many(pair)
        it = iter(stream)
        next(it)
        assert engine.active_requests == 2
        it.close()
        assert engine.active_requests == 0 and not stream.running


def test_typical_norms_are_measured_once_and_norms_measured_elsewhere_are_kept(smollm2, config):
    model, tokenizer = smollm2
    with Engine.for_model(config, model, tokenizer, vectors_for_config(config, log=lambda m: None)) as engine:
        assert engine.norms.known == {}
        forwards = []
        handle = model.register_forward_pre_hook(lambda *_: forwards.append(1))
        try:
            measured = engine.norms.measure([3, 15, 3])
            assert set(measured) == {3, 15} and len(forwards) == 2
            assert engine.typical_norm(15) == measured[15] and len(forwards) == 2
            engine.norms.remember({7: 12.5})  # as from a ZeroGPU worker
            assert engine.typical_norm(7) == 12.5 and len(forwards) == 2
        finally:
            handle.remove()
        assert measured[15] > measured[3] > 0, "the residual stream grows with depth"
