"""steering/offline/axbench_measure.py on the tiny random Llama: per-answer log-probabilities and pooled
residuals equal an unbatched hand computation; unsteered answers are cached by what decides them."""

from types import SimpleNamespace

import pytest
import torch

from steering.config import GenerationSettings
from steering.model.chat_template import encode_chat
from steering.offline import axbench_measure
from steering.offline.axbench_measure import read_answers, unsteered_answers
from tests.helpers import tiny_tokenizer

TOK = tiny_tokenizer()
PROMPTS = ["tell me about sea", "Hi", "What is the capital of France ?"]
ANSWERS = [TOK(t, add_special_tokens=False)["input_ids"] for t in ("the ocean waves", "hello !", "Paris")]


def _by_hand(model, frame: list[int], answer: list[int], layer: int):
    ids = torch.tensor([frame + answer])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    logp = torch.log_softmax(out.logits[0].double(), -1)
    lp = sum(float(logp[t - 1, ids[0, t]]) for t in range(len(frame), ids.shape[1]))
    hidden = out.hidden_states[layer + 1][0, len(frame):].mean(0)  # hidden_states[0] is the embedding
    return lp, hidden


def test_readings_match_a_hand_computation(tiny_llama):
    reads = read_answers(tiny_llama, TOK, PROMPTS, ANSWERS, layer=2, batch_size=2)
    free = encode_chat(TOK, [{"role": "user", "content": ""}])[0].tolist()
    for p, a, r in zip(PROMPTS, ANSWERS, reads):
        frame = encode_chat(TOK, [{"role": "user", "content": p}])[0].tolist()
        lp_prompt, _ = _by_hand(tiny_llama, frame, a, 2)
        lp_free, pooled = _by_hand(tiny_llama, free, a, 2)
        assert r.n == len(a)
        assert r.lp_prompt == pytest.approx(lp_prompt, rel=1e-4)
        assert r.lp_free == pytest.approx(lp_free, rel=1e-4)
        assert torch.allclose(r.pooled, pooled.float(), atol=1e-4)


def test_an_empty_answer_reads_as_nothing(tiny_llama):
    (r,) = read_answers(tiny_llama, TOK, ["Hi"], [[]], layer=1)
    assert r.n == 0 and r.pooled is None and r.lp_free == 0.0


def test_without_prompt_and_layer_only_the_free_reading_is_made(tiny_llama):
    (r,) = read_answers(tiny_llama, TOK, ["Hi"], [ANSWERS[1]], with_prompt=False)
    assert r.lp_prompt == 0.0 and r.pooled is None and r.lp_free < 0


def test_unsteered_answers_are_cached_per_prompt_and_seed(tmp_path, monkeypatch):
    calls = []

    def fake(engine, prompts, seeds, max_new_tokens, plan=None, system_prompt=None, batch_size=16):
        calls.append((list(prompts), list(seeds), system_prompt))
        return [[s, max_new_tokens] for s in seeds]

    monkeypatch.setattr(axbench_measure, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(axbench_measure, "answers_with_seeds", fake)
    engine = SimpleNamespace(config=SimpleNamespace(model="m", generation=GenerationSettings(), system_prompt=None))
    first = unsteered_answers(engine, ["a", "b"], 1, 8)
    assert first == [[1000, 8], [1001, 8]]  # seed * 1000 + i, as evaluate.generate_answers
    assert unsteered_answers(engine, ["a", "b"], 1, 8) == first and len(calls) == 1
    assert unsteered_answers(engine, ["a", "c"], 1, 8) == [[1000, 8], [1001, 8]]
    assert calls[-1] == (["c"], [1001], None)  # only the new prompt is generated
    unsteered_answers(engine, ["a"], 2, 8)
    unsteered_answers(engine, ["a"], 1, 8, system_prompt="Talk about cats in every answer.")
    unsteered_answers(engine, ["a"], 1, 16)
    unsteered_answers(engine, ["a"], 1, 8, cache=False)
    assert len(calls) == 6 and len(list(tmp_path.glob("answers-*.json"))) == 3


def test_answers_with_seeds_sends_one_request_per_prompt_and_cuts_at_the_end_of_turn():
    from steering.offline.axbench_measure import answers_with_seeds

    made = []

    class FakeEngine:
        config = SimpleNamespace(generation=GenerationSettings())

        def eos_ids(self):
            return [9]

        def request(self, messages, plan, settings, system_prompt):
            made.append((messages[0]["content"], settings.seed, settings.max_new_tokens, system_prompt))
            return SimpleNamespace(tokens=[settings.seed, 9, 5], error=None)

        def run_now(self, requests):
            pass

    out = answers_with_seeds(FakeEngine(), ["a", "b", "c"], [7, 8, 9], 4, system_prompt="S", batch_size=2)
    assert out == [[7], [8], []]
    assert made == [("a", 7, 4, "S"), ("b", 8, 4, "S"), ("c", 9, 4, "S")]
