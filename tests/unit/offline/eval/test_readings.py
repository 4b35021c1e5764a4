"""steering/offline/eval/readings.py on the tiny random Llama: per-answer log-probabilities and pooled residuals
equal an unbatched hand computation."""

import pytest
import torch

from steering.model.chat_template import encode_chat
from steering.offline.eval.readings import pool_answers, read_answers
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


def test_pooling_alone_stops_at_the_layer_and_gives_the_same_residuals(tiny_llama):
    reads = read_answers(tiny_llama, TOK, PROMPTS, ANSWERS + [[]], layer=1, batch_size=2)
    pooled = pool_answers(tiny_llama, TOK, ANSWERS + [[]], 1, batch_size=2)
    for r, h in zip(reads[:-1], pooled[:-1]):
        assert torch.allclose(r.pooled, h, atol=1e-5)
    assert pooled[-1] is None
