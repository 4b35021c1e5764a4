"""steering.inspection.concept_rank: concept words and their tokens, the shipped-data ranking on hand-made cards,
re-ranking candidates, and the live concept output score against `output_scores` on a tiny random Llama."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steering.inspection.cards import FeatureCards
from steering.inspection.concept_rank import (
    concept_token_ids,
    concept_words,
    features_for_concept,
    rank_concept,
    rerank,
)
from steering.inspection.labels import FeatureContexts
from steering.backends.hooks import HooksBackend
from steering.backends.reads import output_scores
from steering.inspection.output_score import neutral_prompt_ids
from tests.helpers import tiny_tokenizer


def _feature(label, words=(), says=()):
    return {"label": label, "fire_rate": 0.1, "max_activation": 1.0, "top_tokens": [], "promotes": [],
            "top_words": [[w, 1.0] for w in words], "says": list(says), "contexts": []}


def test_concept_words_drop_stopwords():
    assert concept_words("The Ocean") == ["ocean"] and concept_words("dogs and cats") == ["dogs", "cats"]
    with pytest.raises(ValueError, match="no content word"):
        concept_words("the of")


def test_concept_tokens_are_the_first_token_of_each_spelling():
    tok = tiny_tokenizer()
    ids = concept_token_ids(tok, ["sea", "dog"])
    expected = {tok(f, add_special_tokens=False)["input_ids"][0] for f in (" sea", " Sea", "sea", "Sea", " dog", "dog")}
    assert set(ids.tolist()) == expected


def test_features_for_a_concept_rank_by_matching_fields_and_weight_then_output_score():
    cards = FeatureCards(FeatureContexts({"vocab": {}, "features": [
        _feature("ocean / sea", ["ocean", "sea"], [" oceans"]),  # three fields; half the word weight
        _feature("→ waves", [], [" ocean"]),                       # one field
        _feature("dog / puppy", ["dog"]),                           # none
        _feature("sea", ["sea"]),                                   # label and words, no "ocean"
        _feature("→ tides", [], [" Ocean"]),                        # one field, as feature 1
        _feature("oceanic / oceania"),                              # label: words the concept begins
    ]}), {"output_score": torch.tensor([0.1, 0.2, 0.5, 0.2, 0.3, 0.0])})
    got = features_for_concept(cards, "the ocean")
    assert [r.index for r in got] == [0, 4, 1, 5]  # 4 before 1: same match, higher output score
    assert got[0].matched == ("ocean", "oceans") and got[0].label == "ocean / sea"
    assert got[0].score == pytest.approx(3.5) and got[1].score == pytest.approx(1.0)
    assert got[3].matched == ("oceania", "oceanic")
    assert [r.index for r in features_for_concept(cards, "dog")] == [2]  # three letters: whole forms only
    assert [r.index for r in features_for_concept(cards, "the ocean", n=1)] == [0]


def test_rerank_orders_candidates_by_a_score():
    scores = torch.tensor([0.1, 0.5, 0.3, 0.9])
    got = rerank([0, 1, 2], scores, labels=lambda i: f"f{i}")
    assert [(r.index, r.label) for r in got] == [(1, "f1"), (2, "f2"), (0, "f0")]
    assert [r.index for r in rerank([3, 0, 1], scores, n=2)] == [3, 1]


def test_rank_concept_uses_the_output_score_gain_on_the_concepts_tokens():
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    tok = tiny_tokenizer()
    dirs = torch.randn(8, 32)
    with HooksBackend(model, tok) as backend:
        got = rank_concept(backend, 0, dirs, [1, 4, 6], "the sea", strength=5.0)
    expected = output_scores(model, 0, dirs[[1, 4, 6]], neutral_prompt_ids(tok), 5.0,
                             tokens=concept_token_ids(tok, ["sea"])).gain
    assert sorted(r.index for r in got) == [1, 4, 6]
    by_index = {r.index: r.score for r in got}
    for j, i in enumerate([1, 4, 6]):
        assert by_index[i] == pytest.approx(float(expected[j]), abs=1e-7)
    assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)
