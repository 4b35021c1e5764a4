"""Steering, streaming, isolation and inspection on the real SmolLM2-135M-Instruct.

The SAE here is one the test writes (random unit directions at layer 15): the model is real,
the directions only need to be fixed and known.
"""

import threading

import pytest
import torch
import yaml

from steering.config import GenerationSettings, load_config
from steering.engine import Engine
from steering.inspection import capture as inspector
from steering.steer.hooks import capture_residual, steering
from steering.steer.plan import Edit, SteeringPlan
from steering.steer.vectors import vectors_for_config
from tests.helpers import random_sae, write_sae

LAYER = 15
GREEDY = GenerationSettings(max_new_tokens=20, temperature=0.0, repetition_penalty=1.0)
ASK = [{"role": "user", "content": "Give me three tips for a good night's sleep."}]


@pytest.fixture(scope="module")
def steerer(smollm2, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    sae = random_sae(576, 256, "jumprelu", seed=11, layer=LAYER)
    write_sae(tmp / "sae" / f"layer_{LAYER}", sae)
    (tmp / "demo.yaml").write_text(yaml.safe_dump({
        "model": "embedded:smollm2-135m-instruct",
        "sae": {"source": "./sae", "format": "saelens", "path": "layer_{layer}"},
        "features": [
            {"layer": LAYER, "index": 3, "strength": 0.0, "label": "test direction A", "range": [-400, 400]},
            {"layer": LAYER, "index": 4, "strength": 0.0, "label": "test direction B", "range": [-400, 400]},
        ],
        "generation": GREEDY.to_dict(),
    }))
    config = load_config(tmp / "demo.yaml")
    model, tokenizer = smollm2
    return Engine.for_model(config, model, tokenizer, vectors_for_config(config, log=lambda m: None))


def _ids(steerer, **kw):
    g = steerer.stream(ASK, settings=GREEDY, **kw)
    text = "".join(g)
    return text, g.new_token_ids.tolist()


@pytest.fixture(scope="module")
def baseline(steerer):
    return _ids(steerer)


def test_unsteered_answer_is_sensible(steerer):
    answer = steerer.chat("What is the capital of France?", settings=GREEDY)
    assert "Paris" in answer


def test_strength_zero_is_identical_to_no_steering(steerer, baseline):
    assert _ids(steerer, strengths={"L15:3": 0.0}) == baseline
    # the hook really runs and adds 0: bypass the plan's skipping of no-op features
    u = steerer.vectors.get(LAYER, 3).direction
    assert _ids(steerer, plan=SteeringPlan({LAYER: [Edit("add", u, 0.0)]})) == baseline


def test_clamp_to_the_current_projection_changes_nothing(steerer):
    model = steerer.model
    ids = steerer.encode(ASK)
    u = steerer.vectors.get(LAYER, 3).direction
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with capture_residual(model, LAYER) as cap:
            model(input_ids=ids)
    p_last = float(cap[LAYER][0, -1] @ u)
    # steer only the last position (generated_only with the prompt ending one token earlier)
    def logits_with(s):
        plan = SteeringPlan({LAYER: [Edit("clamp", u, s)]}, generated_only=True)
        with torch.no_grad(), steering(model, plan, prompt_ids=ids[:, :-1]):
            return model(input_ids=ids).logits
    torch.testing.assert_close(logits_with(p_last), base, rtol=0, atol=1e-4)
    assert (logits_with(p_last + 150.0) - base).abs().max() > 1.0


def test_strong_feature_changes_the_text(steerer, baseline):
    text, ids = _ids(steerer, strengths={"L15:3": 250.0})
    assert ids != baseline[1] and text != baseline[0]
    clamp_text, _ = _ids(steerer, strengths={"L15:3": 250.0}, mode="clamp")
    assert clamp_text != baseline[0]


def test_pin_follows_its_formula_and_sets_active_features(steerer):
    model = steerer.model
    ids = steerer.encode(ASK)
    v = steerer.vectors.get(LAYER, 4)
    with torch.no_grad(), capture_residual(model, LAYER) as cap:
        model(input_ids=ids)
    h = cap[LAYER][0]  # (T, d) unsteered output of layer 15 (earlier layers are never steered)
    a = v.rule.activation(h)
    assert (a > 0).any() and (a == 0).any()
    plan = steerer.plan({"L15:3": None, "L15:4": 30.0}, mode="pin")
    with torch.no_grad(), steering(model, plan), capture_residual(model, LAYER) as cap:
        model(input_ids=ids)
    expected = h + (30.0 - a)[:, None] * (v.norm * v.direction)
    torch.testing.assert_close(cap[LAYER][0], expected, rtol=0, atol=1e-3)
    # tied test SAE (w . d = 1): where the feature was active, the SAE now reads exactly 30
    after = v.rule.activation(cap[LAYER][0])
    torch.testing.assert_close(after[a > 0], torch.full_like(after[a > 0], 30.0), rtol=0, atol=1e-3)


def test_two_concurrent_threads_each_match_their_solo_output(steerer, baseline):
    solo_a = _ids(steerer, strengths={"L15:3": 250.0})
    solo_b = _ids(steerer, strengths={"L15:4": -250.0}, mode="clamp")
    results, barrier = {}, threading.Barrier(2)

    def run(name, **kw):
        barrier.wait(10)
        results[name] = _ids(steerer, **kw)

    threads = [
        threading.Thread(target=run, args=("a",), kwargs={"strengths": {"L15:3": 250.0}}),
        threading.Thread(target=run, args=("b",), kwargs={"strengths": {"L15:4": -250.0}, "mode": "clamp"}),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results["a"] == solo_a and results["b"] == solo_b
    assert solo_a != solo_b != baseline
    assert steerer.active_requests == 0


def test_stop_mid_stream_ends_within_one_token_and_leaves_nothing_active(steerer, baseline):
    calls = []
    handle = steerer.model.model.layers[0].register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        g = steerer.stream(ASK, strengths={"L15:3": 60.0}, settings=GenerationSettings(max_new_tokens=200, temperature=0.0))
        it = iter(g)
        for _ in range(3):
            next(it)
        g.stop_event.set()
        at_stop = len(calls)
        it.close()  # what Gradio does on Stop
        assert not g.running
        assert len(calls) - at_stop <= 1
        assert len(g.new_token_ids) < 20
    finally:
        handle.remove()
    assert steerer.active_requests == 0
    assert _ids(steerer) == baseline


def test_inspection_during_a_steered_chat_is_unsteered(steerer):
    prompts = ["The ocean is deep and blue."]
    clean = inspector.residuals(steerer.backend, prompts, LAYER)
    g = steerer.stream(ASK, strengths={"L15:3": 60.0}, settings=GenerationSettings(max_new_tokens=60, temperature=0.0))
    it = iter(g)
    next(it)
    assert g.running
    during = inspector.residuals(steerer.backend, prompts, LAYER)
    it.close()
    torch.testing.assert_close(during, clean)


def test_seeded_sampling_is_reproducible(steerer):
    s = GenerationSettings(max_new_tokens=16, temperature=0.9, top_p=0.95, seed=3)
    a = "".join(steerer.stream(ASK, settings=s))
    b = "".join(steerer.stream(ASK, settings=s))
    c = "".join(steerer.stream(ASK, settings=GenerationSettings(max_new_tokens=16, temperature=0.9, top_p=0.95, seed=4)))
    assert a == b and a != c


def test_multi_turn_history_is_used(steerer):
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ]
    assert "Ada" in steerer.chat(history, settings=GREEDY)


def test_batched_residuals_equal_solo_and_encode_matches_the_sae(steerer):
    prompts = ["Hi", "Tell me about the history of the Roman empire in detail.", "2+2?"]
    batched = inspector.residuals(steerer.backend, prompts, LAYER)
    solo = torch.cat([inspector.residuals(steerer.backend, [p], LAYER) for p in prompts])
    torch.testing.assert_close(batched, solo, rtol=0, atol=1e-4)
    full = inspector.residuals(steerer.backend, prompts[1:2], LAYER, last_token_only=False)[0]
    torch.testing.assert_close(full[-1], solo[1])
    sae = steerer.sae(LAYER)
    codes = steerer.encode_prompts(prompts)
    torch.testing.assert_close(codes, sae.encode(solo), rtol=0, atol=1e-4)
    top = steerer.inspect(prompts[1], n=5)
    assert [t.index for t in top] == torch.argsort(codes[1], descending=True)[:5].tolist()
    acts = steerer.token_activations(prompts[1], top[0].index)
    assert len(acts) == steerer.encode([{"role": "user", "content": prompts[1]}]).shape[1]
    assert acts[-1][1] == pytest.approx(top[0].value, abs=1e-3)


def test_differential_and_scan_through_the_session(steerer):
    pos = ["I love the sea and the waves.", "The ocean is full of fish."]
    neg = ["My laptop needs a new battery.", "Please format this spreadsheet."]
    rows = steerer.differential(pos, neg, n=5)
    codes_p, codes_n = steerer.encode_prompts(pos), steerer.encode_prompts(neg)
    expected = (codes_p.mean(0) - codes_n.mean(0)).topk(5).indices.tolist()
    assert [r.index for r in rows] == expected
    scan = steerer.scan(pos + neg, rows[0].index)
    torch.testing.assert_close(scan, torch.cat([codes_p, codes_n])[:, rows[0].index])


def test_runtime_feature_and_strength_errors(steerer):
    f = steerer.add_feature(LAYER, 10, 5.0, label="added at run time")
    try:
        assert steerer.feature("added at run time") is f
        assert steerer.plan().edits[LAYER][-1].strength == 5.0
        with pytest.raises(ValueError, match="must be a finite number"):
            steerer.plan({"L15:3": float("nan")})
        assert LAYER not in steerer.plan({"L15:3": None, "L15:4": None, "L15:10": None}, mode="clamp").edits
        assert len(steerer.plan({"L15:3": None}, mode="clamp").edits[LAYER]) == 2  # clamp at 0 is a real edit
        with pytest.raises(KeyError, match="unknown feature 'L2:1'"):
            steerer.plan({"L2:1": 1.0})
    finally:
        steerer.features.remove(f)
