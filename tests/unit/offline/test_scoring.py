"""steering/offline/scoring.py on a tiny random Llama: batched NLLs equal a per-text hand computation."""

import math

import pytest
import torch

from steering.model.chat_template import encode_chat
from steering.offline.eval.lexicons import BROAD, concept
from steering.offline.scoring import answer_nll, score, text_nll
from tests.helpers import tiny_tokenizer

TOK = tiny_tokenizer()
PROMPTS = ["tell me about sea", "Hi"]
ANSWERS = [TOK("the ocean waves", add_special_tokens=False)["input_ids"], TOK("hello !", add_special_tokens=False)["input_ids"]]


def _nll(model, ids: list[int], start: int) -> float:
    """-sum log p(ids[t] | ids[:t]) for t >= start, from one unpadded forward pass."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return -sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))


def test_answer_nll_is_each_answer_after_its_chat_prompt(tiny_llama):
    total, count = answer_nll(tiny_llama, TOK, PROMPTS, ANSWERS)
    expected = 0.0
    for p, a in zip(PROMPTS, ANSWERS):
        prompt = encode_chat(TOK, [{"role": "user", "content": p}])[0].tolist()
        expected += _nll(tiny_llama, prompt + a, len(prompt))
    assert count == sum(len(a) for a in ANSWERS)
    assert total == pytest.approx(expected, rel=1e-4)


def test_text_nll_reads_each_text_after_its_first_token(tiny_llama):
    texts = ["the ocean waves", "hello there dog cat", "x"]  # "x" has one token: nothing to score
    total, count = text_nll(tiny_llama, TOK, texts)
    ids = [TOK(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert count == sum(len(i) - 1 for i in ids if len(i) > 1)
    assert total == pytest.approx(sum(_nll(tiny_llama, i, 1) for i in ids if len(i) > 1), rel=1e-4)


def test_score_counts_mentions_and_divides_perplexities(tiny_llama):
    ocean = concept("ocean", BROAD)
    base = answer_nll(tiny_llama, TOK, PROMPTS, ANSWERS)
    got = score(tiny_llama, TOK, PROMPTS, ANSWERS, ocean, base)
    assert got["inclusion"] == 0.5  # "the ocean waves" names the ocean, "hello !" does not
    assert got["fluency_ratio"] == pytest.approx(1.0)
    assert got["perplexity"] == pytest.approx(math.exp(base[0] / base[1]))
