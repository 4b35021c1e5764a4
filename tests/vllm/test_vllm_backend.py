"""`backend: vllm` against the transformers backend: same edits (every mode, conditions), same greedy tokens; per-request isolation,
Stop, the inspector's residuals and the prefix cache."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import pytest
import torch

from steering.config import Condition, FeatureSpec
from steering.keys import FeatureKey
from steering.sae import FeatureRule
from steering.steer.plan import Edit, Gate, SteeringPlan

PROMPT = "Tell me about your weekend."


def steer(engine, strengths: dict, mode: str, conditions: dict | None = None, **options) -> SteeringPlan:
    """A plan for shipped SAE features by key, whatever demo.yaml's feature list holds; `conditions` by key."""
    keys = [FeatureKey.parse(k) for k in strengths]
    features = [FeatureSpec(layer=k.layer, index=k.index, condition=(conditions or {}).get(str(k))) for k in keys]
    return engine.plan(dict(zip(map(str, keys), strengths.values())), mode, features=features, **options)


def answer(engine, plan, settings, prompt=PROMPT):
    r = engine.request(prompt, plan, settings)
    engine.run_now([r])
    assert r.error is None, r.error
    return r


def two_layer_plan(engine) -> SteeringPlan:
    """Two layers: the shipped layer-15 direction of feature 8672 added at layer 10 as well (the math needs no SAE there)."""
    v = engine.vector(15, 8672)
    return SteeringPlan({10: [Edit("add", v.direction, 12.0, v.norm)], 15: [Edit("clamp", v.direction, 30.0, v.norm)]})


def early_condition_plan(engine) -> SteeringPlan:
    """Clamp at layer 15 only where a feature read at layer 10 fires: the shipped layer-15 direction of 8672 read
    there as a ReLU feature (a per-feature encoder rule, which travels to the worker as plain numbers)."""
    v = engine.vector(15, 8672)
    rule = FeatureRule(0, v.direction, torch.tensor(0.0), torch.zeros_like(v.direction), None, "relu")
    gate = Gate(FeatureKey(10, 0), 0.5, rule.activation)
    return SteeringPlan({15: [Edit("clamp", v.direction, 40.0, v.norm, gate=gate)]})


ME = Condition(FeatureKey(15, 15997), 2.0)  # a shipped feature that fires on "I" and "me"
NEW_OPERATORS = {
    "norm_add": lambda e: steer(e, {"L15:8672": 60}, "norm_add"),
    "angular": lambda e: steer(e, {"L15:8672": 80}, "angular"),
    "angular_adaptive": lambda e: steer(e, {"L15:8672": 80}, "angular_adaptive"),
    "cap": lambda e: steer(e, {"L15:8672": 40}, "cap"),
    "add where a feature fires (same layer, TopK SAE)": lambda e: steer(e, {"L15:8672": 60}, "add", {"L15:8672": ME}),
    "pin where a feature fires": lambda e: steer(e, {"L15:8672": 20}, "pin", {"L15:8672": ME}),
    "clamp where an earlier layer's feature fires": early_condition_plan,
}

CASES = {
    "unsteered": lambda e: None,
    "add": lambda e: steer(e, {"L15:8672": 40}, "add"),
    "clamp": lambda e: steer(e, {"L15:8672": 40}, "clamp"),
    "clamp to 0 (remove)": lambda e: steer(e, {"L15:8672": 0}, "clamp"),
    "pin (TopK SAE)": lambda e: steer(e, {"L15:8672": 20}, "pin"),
    "two features": lambda e: steer(e, {"L15:8241": 30, "L15:15305": 20}, "add"),
    "two layers": two_layer_plan,
    "special tokens left alone": lambda e: steer(e, {"L15:8672": 40}, "add", steer_special_tokens=False),
    "generated tokens only": lambda e: steer(e, {"L15:8672": 40}, "add", generated_only=True),
    **NEW_OPERATORS,
}


@pytest.fixture(scope="module")
def parity(hf_engine, vllm_engine, greedy):
    """Every case's greedy answer on each backend, all cases in one batch per backend, each row steered by its own
    plan. A row of a batch equals its request alone on both (tests/integration/test_batching.py for transformers,
    `test_eight_concurrent_configs_each_equal_their_solo_answer` here for vLLM)."""
    plans = {case: make(hf_engine) for case, make in CASES.items()}
    answers = {}
    for name, engine in (("transformers", hf_engine), ("vllm", vllm_engine)):
        rows = {case: engine.request(PROMPT, plan, greedy) for case, plan in plans.items()}
        engine.run_now(list(rows.values()))
        answers[name] = rows
    return answers


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_tokens_equal_the_transformers_backend(case, parity, hf_engine):
    ref, row = parity["transformers"][case], parity["vllm"][case]
    assert ref.error is None and row.error is None, (ref.error, row.error)
    expected, got = ref.tokens, row.tokens
    assert len(expected) == 32 and got == expected, (hf_engine.tokenizer.decode(expected), hf_engine.tokenizer.decode(got))
    if case in NEW_OPERATORS:  # so that their parity compares steered answers, not two unsteered ones
        assert expected != parity["transformers"]["unsteered"].tokens, f"{case} left the answer unchanged"


def test_steering_changes_the_answer(hf_engine, vllm_engine, greedy):
    plain = answer(vllm_engine, None, greedy).tokens
    steered = answer(vllm_engine, CASES["clamp"](hf_engine), greedy)
    assert steered.tokens != plain
    assert "soccer" in vllm_engine.tokenizer.decode(steered.tokens).lower()


def test_eight_concurrent_configs_each_equal_their_solo_answer(hf_engine, vllm_engine, greedy):
    keys = ["L15:8672", "L15:8241", "L15:15305", "L15:6759"]
    plans = [steer(vllm_engine, {k: s}, m) for k in keys for s, m in ((40, "clamp"), (25, "add"))]
    solo = [answer(vllm_engine, p, greedy).tokens for p in plans]
    assert len({tuple(t) for t in solo}) == 8, "the eight configs should give eight different answers"
    rows = [vllm_engine.request(PROMPT, p, greedy) for p in plans]
    vllm_engine.run_now(rows)  # all in flight together: vLLM batches them in one forward
    assert [r.tokens for r in rows] == solo


def test_seeded_sampling_repeats_and_seeds_differ(vllm_engine, configs):
    settings = replace(configs[0].generation, max_new_tokens=24, seed=7)
    plan = steer(vllm_engine, {"L15:8241": 30}, "add")
    a, b = answer(vllm_engine, plan, settings).tokens, answer(vllm_engine, plan, settings).tokens
    c = answer(vllm_engine, plan, replace(settings, seed=8)).tokens
    assert a == b and a != c


def test_stream_and_stop_abort_the_engine_request(vllm_engine, configs):
    settings = replace(configs[0].generation, max_new_tokens=400, temperature=0.0)
    stream = vllm_engine.stream(PROMPT, {"L15:8672": 40}, "clamp", settings=settings)
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            break  # closing the iterator is Stop
    row = stream.requests[0]
    tokens = len(row.tokens)
    assert row.finished.wait(60), "the row ends once Stop aborts its engine request"
    llm = vllm_engine.backend.engine.llm
    assert llm.output_processor.get_num_unfinished_requests() == 0
    assert vllm_engine.active_requests == 0 and tokens < 20
    assert len(row.tokens) == tokens, "no token arrives after Stop"
    assert vllm_engine.chat("Say hello.", settings=replace(settings, max_new_tokens=8))


def test_stop_from_another_thread_mid_answer(vllm_engine, configs):
    settings = replace(configs[0].generation, max_new_tokens=400, temperature=0.0)
    stream = vllm_engine.stream(PROMPT, settings=settings)
    third = threading.Event()
    stopper = threading.Thread(target=lambda: third.wait(120) and stream.request_stop())
    stopper.start()
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            third.set()  # the other thread stops the answer now, mid-answer
    stopper.join(10)
    text = "".join(pieces)
    assert 0 < len(stream.requests[0].tokens) < 400 and text
    assert vllm_engine.backend.engine.llm.output_processor.get_num_unfinished_requests() == 0


def test_inspector_reads_residuals_from_the_engine(hf_engine, vllm_engine):
    message = "Tell me about dogs and their puppies."
    ref, got = hf_engine.message_codes(message), vllm_engine.message_codes(message)
    assert got.tokens == ref.tokens
    assert torch.allclose(got.codes, ref.codes, atol=2e-3, rtol=1e-3), float((got.codes - ref.codes).abs().max())
    assert torch.equal(got.codes.topk(3).indices, ref.codes.topk(3).indices)
    steered = steer(vllm_engine, {"L15:8672": 40}, "clamp")
    assert torch.allclose(vllm_engine.message_codes(message, plan=steered).codes,
                          hf_engine.message_codes(message, plan=steered).codes, atol=2e-3, rtol=1e-3)
    assert abs(vllm_engine.typical_norm(15) - hf_engine.typical_norm(15)) < 1e-2 * hf_engine.typical_norm(15)


def test_prefix_cache_never_crosses_steering(hf_engine, vllm_engine, greedy):
    """Unsteered, steered, unsteered, steered again: each equals the transformers backend's answer (which
    has no prefix cache); repeats of one steering reuse their blocks, a different steering never does.
    The prompt is longer than one KV block (128 tokens on vLLM's CPU backend): only whole blocks are cached."""
    prompt = ("Here are my notes from a quiet week. " + " ".join(
        f"On day {i} I woke early, read the paper, walked to the shop on the corner and wrote a letter to a friend."
        for i in range(1, 9)) + " Describe a quiet morning in a small town, in a few sentences.")
    food = steer(vllm_engine, {"L15:15305": 30}, "clamp")
    greedy = replace(greedy, max_new_tokens=12)  # the prompt's blocks are what is checked, not a long answer
    expected = {name: answer(hf_engine, plan, greedy, prompt).tokens for name, plan in (("plain", None), ("steer", food))}
    runs = [(name, answer(vllm_engine, plan, greedy, prompt))
            for name, plan in (("plain", None), ("steer", food), ("plain", None), ("steer", food))]
    for name, r in runs:
        assert r.tokens == expected[name], name
    cached = [r.cached_tokens for _, r in runs]
    assert cached[1] == 0, "a steered request must not reuse blocks computed unsteered"
    assert cached[2] > 0 and cached[3] > 0, "the same steering (or none) reuses its own blocks"


def test_output_scores_from_the_engine_equal_the_transformers_ones(hf_engine, vllm_engine):
    """Concept search ranks candidates by output score; on vLLM it reads logprobs and ranks from the engine."""
    from steering.inspection.concept_rank import concept_output_scores

    layer, candidates = 15, [8672, 8241, 15305, 6759, 100, 2000]
    directions = hf_engine.sae(layer).W_dec[candidates]
    ref = concept_output_scores(hf_engine.backend, layer, directions, "music", 60.0)
    got = concept_output_scores(vllm_engine.backend, layer, directions, "music", 60.0)
    assert torch.allclose(got.base, ref.base, rtol=1e-3, atol=1e-6)
    assert torch.allclose(got.score, ref.score, rtol=1e-3, atol=1e-6), (got.score, ref.score)
    assert int(got.score.argmax()) == int(ref.score.argmax()) == 1  # the music feature


def test_concept_search_on_the_engine_equals_the_transformers_one(app_service, hf_engine):
    from steering.inspection.feature_info import load_feature_info
    from steering.service.demo import DemoService

    got = app_service.concept_search("music", n=5)
    ref = DemoService(hf_engine, info=load_feature_info(hf_engine.config)).concept_search("music", n=5)
    assert len(got) == len(ref) == 5 and got[0]["index"] == ref[0]["index"]
    by_index = {r["index"]: r for r in ref}
    shared = [r for r in got if r["index"] in by_index]
    assert len(shared) >= 4, "residuals agree to 2e-3: at most a near tie at the end may swap"
    for r in shared:
        assert r["output"] == pytest.approx(by_index[r["index"]]["output"], rel=1e-3, abs=1e-4), r["index"]


def test_a_model_too_large_for_its_memory_is_refused_before_vllm_starts(configs):
    from steering.model.loading import resolve_model_path
    from steering.backends.vllm.engine import check_fits, weight_bytes

    path = resolve_model_path(configs[1].model_source())
    assert 500e6 < weight_bytes(path, "float32") < 600e6  # SmolLM2-135M at 4 bytes per parameter
    with pytest.raises(RuntimeError) as err:
        check_fits(path, "float32", 1, 1, available=1 * 2**30)
    message = str(err.value)
    assert "does not fit in this host's free memory" in message and "vllm.max_model_len" in message
    assert "vllm.kv_cache_gib" in message and "vllm.tensor_parallel_size" in message
    check_fits(path, "float32", 1, 1, available=4 * 2**30)  # fits: no error


def test_tensor_parallel_from_the_config_gives_the_same_tokens(configs, hf_engine, greedy, monkeypatch):
    """vllm.tensor_parallel_size: 3 (SmolLM2 has 9 heads and 3 KV heads), three CPU workers on this machine's
    cores; every rank steers its copy of the residual the same way."""
    from steering.config import VLLMSettings
    from steering.engine import Engine

    cores = os.cpu_count() or 1
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(i % cores) for i in range(3)))  # one NUMA node here
    with Engine.from_config(replace(configs[1], vllm=VLLMSettings(max_model_len=512, kv_cache_gib=1,
                                                                   tensor_parallel_size=3))) as tp:
        cases = ("pin (TopK SAE)", "clamp", "two layers")
        plans = [CASES[case](hf_engine) for case in cases]
        rows = [tp.request(PROMPT, plan, greedy) for plan in plans]
        tp.run_now(rows)  # one batch: every rank steers each row by its own plan
        for case, plan, row in zip(cases, plans, rows):
            assert row.error is None and row.tokens == answer(hf_engine, plan, greedy).tokens, case
