"""Batched generation with per-row steering (steering.generate.decode and .batching), on the real SmolLM2.

Each row of a batch must behave as its request would alone: same steering, positions, sampling,
penalty, length and Stop. The reference for logits is independent of `generate`: one
teacher-forced forward pass over prompt + answer, steered by the solo `steering()` block.
"""

import queue
import threading
import time

import pytest
import torch
import yaml
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from steering.config import GenerationSettings, load_config
from steering.engine import Engine
from steering.generate.batching import Batcher
from steering.generate.decode import Request, RequestSpec
from steering.generate.sampling import repetition_penalty
from steering.generate.stream import Stream
from steering.steer.hooks import steering
from steering.steer.plan import Edit, SteeringPlan
from steering.steer.vectors import vectors_for_config
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
    with Engine.for_model(config, model, tokenizer, vectors_for_config(config, log=lambda m: None)) as s:
        yield s


def _wait_idle(steerer, seconds=30):
    deadline = time.time() + seconds
    while steerer.active_requests and time.time() < deadline:
        time.sleep(0.05)
    return steerer.active_requests


BATCH_WINDOW_S = 60.0
"""Long enough never to close a batch under load: each test's batch closes when it is full (`max_batch`)."""


class _Submitter:
    """A `Batcher` over the engine's backend, and streams submitted to it (as the engine makes them)."""

    def __init__(self, steerer, window_s=BATCH_WINDOW_S, max_batch=3):
        self.steerer = steerer
        self.batcher = Batcher(steerer.backend.generate, window_s=window_s, max_batch=max_batch)

    @property
    def batch_sizes(self):
        return list(self.batcher.batch_sizes)

    def stream(self, enc, plan=None, settings=GenerationSettings(), record_logits=False):
        r = Request(RequestSpec(enc, plan, settings, record_logits=record_logits), queue.SimpleQueue())
        return Stream([r], r.events, self.batcher.submit).start()


def _plans(steerer):
    return [
        steerer.plan({"L15:3": 80.0}),
        steerer.plan({"L15:4": -60.0, "L10:5": 40.0}, mode="clamp"),
        SteeringPlan(steerer.plan({"L15:3": 50.0}, mode="pin").edits, steer_special_tokens=False, generated_only=True),
    ]


def _batch(steerer, prompts, plans, settings):
    batcher = _Submitter(steerer, max_batch=len(prompts))
    gens = [batcher.stream(steerer.encode([{"role": "user", "content": p}]), plan=plan, settings=s, record_logits=True)
            for p, plan, s in zip(prompts, plans, settings)]
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
    assert list(batcher.batch_sizes) == [3]
    unsteered = "".join(steerer.stream(PROMPTS[0], plan=SteeringPlan(), settings=settings[0]))
    assert texts[0] != unsteered  # the steering is strong enough to matter
    for prompt, plan, s, g, text in zip(PROMPTS, plans, settings, gens, texts):
        solo = steerer.stream(prompt, plan=plan, settings=s)
        assert "".join(solo) == text
        assert g.new_token_ids.tolist() == solo.new_token_ids.tolist()
        ids = steerer.encode([{"role": "user", "content": prompt}])
        full = torch.cat([ids[0], g.new_token_ids]).unsqueeze(0)
        with torch.inference_mode(), steering(steerer.model, plan, ids, steerer.backend.special_ids):
            reference = steerer.model(full).logits[0, ids.shape[-1] - 1 : -1]
        assert g.logits.shape == reference.shape
        assert (g.logits - reference).abs().max().item() < LOGIT_TOLERANCE
    assert _wait_idle(steerer) == 0


def test_seeded_sampling_in_a_batch_equals_alone(steerer):
    s = [GenerationSettings(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=seed) for seed in (3, 4)]
    plans = [steerer.plan({"L15:3": 40.0}), SteeringPlan()]
    _, _, texts = _batch(steerer, PROMPTS[:2], plans, s)
    for prompt, plan, settings, text in zip(PROMPTS, plans, s, texts):
        assert "".join(steerer.stream(prompt, plan=plan, settings=settings)) == text


def test_rows_end_on_their_own_length_and_stop(steerer):
    s_short = GenerationSettings(max_new_tokens=3, temperature=0.0)
    s_long = GenerationSettings(max_new_tokens=40, temperature=0.0)
    batcher = _Submitter(steerer)
    enc = steerer.encode([{"role": "user", "content": PROMPTS[0]}])
    short = batcher.stream(enc, settings=s_short)
    stopped = batcher.stream(enc, plan=steerer.plan({"L15:3": 60.0}), settings=s_long)
    full = batcher.stream(enc, settings=GenerationSettings(max_new_tokens=16, temperature=0.0))
    it = iter(stopped)
    next(it)
    it.close()  # Stop, as Gradio does: this row ends within a token, the others go on
    assert not stopped.running
    assert len(stopped.new_token_ids) < 10
    assert "".join(short) and len(short.new_token_ids) == 3
    rest = "".join(full)
    assert len(full.new_token_ids) == 16 or full.new_token_ids[-1].item() in steerer.eos_ids()
    assert rest == "".join(steerer.stream(PROMPTS[0], plan=SteeringPlan(), settings=GenerationSettings(max_new_tokens=16, temperature=0.0)))
    assert list(batcher.batch_sizes) == [3]
    assert _wait_idle(steerer) == 0


def test_requests_arriving_together_share_a_batch_and_later_ones_do_not(steerer):
    batcher = _Submitter(steerer, window_s=2.0, max_batch=3)  # the window only delays the 4th and the late one
    enc = steerer.encode([{"role": "user", "content": "Hi!"}])
    s = GenerationSettings(max_new_tokens=2, temperature=0.0)
    first = [batcher.stream(enc, settings=s) for _ in range(4)]  # the first three fill a batch, the 4th overflows
    for g in first:
        "".join(g)
    late = batcher.stream(enc, settings=s)
    "".join(late)
    assert list(batcher.batch_sizes) == [3, 1, 1]


def test_an_error_in_a_batch_reaches_every_row_and_frees_it(steerer):
    def broken(h):
        raise RuntimeError("encoder exploded")

    v = steerer.vector(LAYER, 3)
    bad = SteeringPlan({LAYER: [Edit("pin", v.direction, 1.0, v.norm, broken)]})
    batcher = _Submitter(steerer, max_batch=2)
    enc = steerer.encode([{"role": "user", "content": "Hi!"}])
    gens = [batcher.stream(enc, plan=p, settings=GenerationSettings(max_new_tokens=4)) for p in (bad, SteeringPlan())]
    for g in gens:
        with pytest.raises(RuntimeError, match="encoder exploded"):
            "".join(g)
        assert not g.running
    assert _wait_idle(steerer) == 0


def test_engine_batches_only_when_built_to(smollm2, steerer):
    model, tokenizer = smollm2
    with Engine.for_model(steerer.config, model, tokenizer, steerer.vectors, batching=True,
                          batch_window_s=BATCH_WINDOW_S, max_batch=3) as batched:
        assert "forward" in vars(model.lm_head)  # the small-batch route is on
        gens = [batched.stream(p, settings=GenerationSettings(max_new_tokens=4, temperature=0.0)) for p in PROMPTS]
        assert all(isinstance(g, Stream) for g in gens)
        assert all("".join(g) for g in gens)
        assert list(batched.batcher.batch_sizes) == [3]
    assert "forward" not in vars(model.lm_head)  # close() gave the layers their own forward back
    with Engine.for_model(steerer.config, model, tokenizer, steerer.vectors, batching=False) as alone:
        gens = [alone.stream(p, settings=GenerationSettings(max_new_tokens=4, temperature=0.0)) for p in PROMPTS]
        assert all("".join(g) for g in gens)
        assert list(alone.batcher.batch_sizes) == [1, 1, 1]
        assert "forward" not in vars(model.lm_head)


def test_compared_pair_stays_in_one_batch_and_matches_alone(steerer):
    """Compare mode: the steered and the unsteered answer share one batch and one queue, no extra thread,
    and each equals its request alone."""
    settings = GenerationSettings(max_new_tokens=10, temperature=0.8, seed=5)
    events = queue.SimpleQueue()
    plan = steerer.plan({"L15:3": 200.0})
    pair = [steerer.request(PROMPTS[0], plan, settings, events=events, tag=0),
            steerer.request(PROMPTS[0], SteeringPlan(), settings, events=events, tag=1)]
    before = threading.active_count()
    texts = ["", ""]
    stream = steerer.stream_many(pair)
    for i, piece in stream:
        texts[i] += piece
        assert threading.active_count() <= before + 1  # the one batch thread
    assert texts[0] == "".join(steerer.stream(PROMPTS[0], plan=plan, settings=settings))
    assert texts[1] == "".join(steerer.stream(PROMPTS[0], plan=SteeringPlan(), settings=settings))
    assert texts[0] != texts[1]


def test_rows_on_the_small_batch_route_still_match_alone(smollm2, steerer):
    model, tokenizer = smollm2
    plans = _plans(steerer)
    settings = [GenerationSettings(max_new_tokens=8, temperature=0.0)] * 3
    with Engine.for_model(steerer.config, model, tokenizer, steerer.vectors, batching=True,
                          batch_window_s=BATCH_WINDOW_S, max_batch=3) as batched:
        _, gens, texts = _batch(batched, PROMPTS, plans, settings)
    for prompt, plan, g, text in zip(PROMPTS, plans, gens, texts):
        assert "".join(steerer.stream(prompt, plan=plan, settings=settings[0])) == text
        ids = steerer.encode([{"role": "user", "content": prompt}])
        full = torch.cat([ids[0], g.new_token_ids]).unsqueeze(0)
        with torch.inference_mode(), steering(steerer.model, plan, ids, steerer.backend.special_ids):
            reference = steerer.model(full).logits[0, ids.shape[-1] - 1 : -1]
        assert (g.logits - reference).abs().max().item() < LOGIT_TOLERANCE
