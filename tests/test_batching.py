"""Batched generation with per-row steering (steering.batching), on the real SmolLM2.

Each row of a batch must behave as its request would alone: same steering, positions, sampling,
penalty, length and Stop. The reference for logits is independent of `generate`: one
teacher-forced forward pass over prompt + answer, steered by the solo `steering()` block.
"""

import threading
import time

import pytest
import torch
import yaml
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from steering.batching import Batcher, BatchedGeneration, repetition_penalty
from steering.config import GenerationSettings, load_config
from steering.hooks import Edit, SteeringPlan, active_requests, steering
from steering.session import Steerer
from steering.small_batch import undo_small_batches
from steering.vectors import vectors_for_config
from tests.helpers import random_sae, write_sae

LAYER = 15
LOGIT_TOLERANCE = 1e-3  # absolute, on logits of magnitude ~30; measured differences are ~1e-4
PROMPTS = [
    "Give me three tips for a good night's sleep.",
    "Hi!",
    "Write one sentence about the history of the city of Paris, please, and keep it short.",
]


@pytest.fixture(scope="module")
def steerer(smollm2, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching")
    for layer, seed in ((LAYER, 11), (10, 12)):
        write_sae(tmp / "sae" / f"layer_{layer}", random_sae(576, 256, "jumprelu", seed=seed, layer=layer))
    (tmp / "demo.yaml").write_text(yaml.safe_dump({
        "model": "embedded:smollm2-135m-instruct",
        "sae": {"source": "./sae", "format": "saelens", "path": "layer_{layer}"},
        "features": [
            {"layer": LAYER, "index": 3, "strength": 0.0, "label": "A"},
            {"layer": LAYER, "index": 4, "strength": 0.0, "label": "B"},
            {"layer": 10, "index": 5, "strength": 0.0, "label": "C"},
        ],
        "generation": {"max_new_tokens": 12, "temperature": 0.0, "repetition_penalty": 1.0},
    }))
    config = load_config(tmp / "demo.yaml")
    model, tokenizer = smollm2
    s = Steerer(config, model, tokenizer, vectors_for_config(config, log=lambda m: None))
    yield s
    s.batcher = None
    undo_small_batches(model)  # the model is shared with other test modules


def _plans(steerer):
    return [
        steerer.plan({"L15:3": 80.0}),
        steerer.plan({"L15:4": -60.0, "L10:5": 40.0}, mode="clamp"),
        SteeringPlan(steerer.plan({"L15:3": 50.0}, mode="pin").edits, steer_special_tokens=False, generated_only=True),
    ]


def _batch(steerer, prompts, plans, settings, **kw):
    batcher = Batcher(steerer.model, steerer.tokenizer, steerer._eos_ids(), steerer.special_ids, window_s=0.05, **kw)
    gens = [BatchedGeneration(batcher, steerer.encode([{"role": "user", "content": p}]), plan=plan, settings=s,
                              record_logits=True)
            for p, plan, s in zip(prompts, plans, settings)]
    for g in gens:
        g.start()
    texts = [""] * len(gens)

    def consume(i):
        texts[i] = "".join(gens[i])

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(gens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return batcher, gens, texts


def test_repetition_penalty_matches_transformers():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(1, 50, generator=g) * 5
    seen = torch.tensor([[3, 7, 7, 49, 0]])
    expected = RepetitionPenaltyLogitsProcessor(1.3)(seen, scores.clone())
    torch.testing.assert_close(repetition_penalty(scores, seen, 1.3), expected, rtol=0, atol=0)
    assert repetition_penalty(scores, seen, 1.0) is scores


def test_each_row_matches_its_request_alone(steerer):
    """Different prompt lengths (so left padding), plans in add, clamp over two layers, and pin
    on generated tokens only: every row's text equals a lone request's, and its logits equal a
    teacher-forced solo forward within LOGIT_TOLERANCE."""
    plans = _plans(steerer)
    settings = [GenerationSettings(max_new_tokens=12, temperature=0.0, repetition_penalty=r) for r in (1.0, 1.2, 1.0)]
    batcher, gens, texts = _batch(steerer, PROMPTS, plans, settings)
    assert batcher.batch_sizes == [3]
    unsteered = "".join(steerer.stream(PROMPTS[0], plan=SteeringPlan(), settings=settings[0]))
    assert texts[0] != unsteered  # the steering is strong enough to matter
    for prompt, plan, s, g, text in zip(PROMPTS, plans, settings, gens, texts):
        solo = steerer.stream(prompt, plan=plan, settings=s)
        assert "".join(solo) == text
        assert g.new_token_ids.tolist() == solo.new_token_ids.tolist()
        ids = steerer.encode([{"role": "user", "content": prompt}])
        full = torch.cat([ids[0], g.new_token_ids]).unsqueeze(0)
        with torch.inference_mode(), steering(steerer.model, plan, ids, steerer.special_ids):
            reference = steerer.model(full).logits[0, ids.shape[-1] - 1 : -1]
        assert g.logits.shape == reference.shape
        assert (g.logits - reference).abs().max().item() < LOGIT_TOLERANCE
    assert active_requests() == 0


def test_seeded_sampling_in_a_batch_equals_alone(steerer):
    s = [GenerationSettings(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=seed) for seed in (3, 4)]
    plans = [steerer.plan({"L15:3": 40.0}), SteeringPlan()]
    _, _, texts = _batch(steerer, PROMPTS[:2], plans, s)
    for prompt, plan, settings, text in zip(PROMPTS, plans, s, texts):
        assert "".join(steerer.stream(prompt, plan=plan, settings=settings)) == text


def test_rows_end_on_their_own_length_and_stop(steerer):
    s_short = GenerationSettings(max_new_tokens=3, temperature=0.0)
    s_long = GenerationSettings(max_new_tokens=40, temperature=0.0)
    batcher = Batcher(steerer.model, steerer.tokenizer, steerer._eos_ids(), steerer.special_ids, window_s=0.05)
    enc = steerer.encode([{"role": "user", "content": PROMPTS[0]}])
    short = BatchedGeneration(batcher, enc, settings=s_short).start()
    stopped = BatchedGeneration(batcher, enc, plan=steerer.plan({"L15:3": 60.0}), settings=s_long).start()
    full = BatchedGeneration(batcher, enc, settings=GenerationSettings(max_new_tokens=16, temperature=0.0)).start()
    it = iter(stopped)
    next(it)
    it.close()  # Stop, as Gradio does: this row ends within a token, the others go on
    assert not stopped.running
    assert len(stopped.new_token_ids) < 10
    assert "".join(short) and len(short.new_token_ids) == 3
    rest = "".join(full)
    assert len(full.new_token_ids) == 16 or full.new_token_ids[-1].item() in steerer._eos_ids()
    assert rest == "".join(steerer.stream(PROMPTS[0], plan=SteeringPlan(), settings=GenerationSettings(max_new_tokens=16, temperature=0.0)))
    assert batcher.batch_sizes == [3]
    deadline = time.time() + 30
    while active_requests() and time.time() < deadline:
        time.sleep(0.05)
    assert active_requests() == 0


def test_requests_arriving_together_share_a_batch_and_later_ones_do_not(steerer):
    batcher = Batcher(steerer.model, steerer.tokenizer, steerer._eos_ids(), steerer.special_ids, window_s=0.2, max_batch=3)
    enc = steerer.encode([{"role": "user", "content": "Hi!"}])
    s = GenerationSettings(max_new_tokens=2, temperature=0.0)
    first = [BatchedGeneration(batcher, enc, settings=s).start() for _ in range(4)]  # the 4th overflows max_batch
    for g in first:
        "".join(g)
    late = BatchedGeneration(batcher, enc, settings=s).start()
    "".join(late)
    assert batcher.batch_sizes == [3, 1, 1]


def test_an_error_in_a_batch_reaches_every_row_and_frees_it(steerer):
    def broken(h):
        raise RuntimeError("encoder exploded")

    v = steerer.vector(LAYER, 3)
    bad = SteeringPlan({LAYER: [Edit("pin", v.direction, 1.0, v.norm, broken)]})
    batcher = Batcher(steerer.model, steerer.tokenizer, steerer._eos_ids(), steerer.special_ids, window_s=0.05)
    enc = steerer.encode([{"role": "user", "content": "Hi!"}])
    gens = [BatchedGeneration(batcher, enc, plan=p, settings=GenerationSettings(max_new_tokens=4)).start()
            for p in (bad, SteeringPlan())]
    for g in gens:
        with pytest.raises(RuntimeError, match="encoder exploded"):
            "".join(g)
        assert not g.running
    assert active_requests() == 0


def test_steerer_batches_only_where_it_can(steerer):
    try:
        assert steerer.enable_batching(window_s=0.05)
        assert "forward" in vars(steerer.model.lm_head)  # the small-batch route is on
        gens = [steerer.stream(p, settings=GenerationSettings(max_new_tokens=4, temperature=0.0)) for p in PROMPTS]
        assert all(isinstance(g, BatchedGeneration) for g in gens)
        assert all("".join(g) for g in gens)
        assert steerer.batcher.batch_sizes == [3]
        assert not steerer.enable_batching(window_s=0)
        assert steerer.batcher is None
    finally:
        steerer.batcher = None
        undo_small_batches(steerer.model)


def test_rows_on_the_small_batch_route_still_match_alone(steerer):
    try:
        steerer.enable_batching(window_s=0.05)
        plans = _plans(steerer)
        settings = [GenerationSettings(max_new_tokens=8, temperature=0.0)] * 3
        _, gens, texts = _batch(steerer, PROMPTS, plans, settings)
        steerer.batcher = None
        for prompt, plan, g, text in zip(PROMPTS, plans, gens, texts):
            assert "".join(steerer.stream(prompt, plan=plan, settings=settings[0])) == text
            ids = steerer.encode([{"role": "user", "content": prompt}])
            full = torch.cat([ids[0], g.new_token_ids]).unsqueeze(0)
            with torch.inference_mode(), steering(steerer.model, plan, ids, steerer.special_ids):
                reference = steerer.model(full).logits[0, ids.shape[-1] - 1 : -1]
            assert (g.logits - reference).abs().max().item() < LOGIT_TOLERANCE
    finally:
        steerer.batcher = None
        undo_small_batches(steerer.model)
