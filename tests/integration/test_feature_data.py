"""The per-feature data shipped with the SAE: both files load as cards, densities and histograms are consistent,
the defaults' labels name their concepts, most labels are English words, and a few output scores recompute
on the real model."""

import json
from pathlib import Path

import pytest
import torch

from steering.inspection.cards import load_feature_cards
from steering.inspection.concept_rank import features_for_concept
from tests.helpers import ROOT

FOLDER = ROOT / "saes" / "smollm2-135m-instruct" / "layer_15"
WORDS = Path("/usr/share/dict/words")
CONCEPTS = {  # the shipped defaults (demo.yaml) and words their labels may use
    8672: {"football", "soccer", "basketball", "tennis", "baseball", "hockey", "rugby", "sport", "sports", "game"},
    8241: {"music", "guitar", "piano", "composer", "pianist", "instrument", "violin", "musical", "musician", "drum"},
    15305: {"food", "pizza", "cream", "rice", "lasagna", "pasta", "cheese", "salad", "bread", "soup", "dish"},
    6759: {"function", "functions", "decorator", "callable", "python", "code", "called", "lambda", "method"},
    9906: {"weather", "rain", "snow", "storm", "sunny", "climate"},
    13926: {"france", "french", "paris"},
    14200: {"dog", "dogs", "puppy", "pet", "pets"},
    4511: {"fear", "scary", "afraid", "scared", "horror"},
}


@pytest.fixture(scope="module")
def cards():
    return load_feature_cards(FOLDER)


def test_the_shipped_files_load_as_one_card_per_feature(cards):
    d_sae = json.loads((FOLDER / "cfg.json").read_text())["d_sae"]
    assert len(cards) == d_sae
    card = cards.card(8672)
    for key in ("label", "density", "histogram", "output_score", "promotes", "says", "contexts", "top_words"):
        assert card[key] is not None, key
    assert card["contexts"] and "[[" in card["contexts"][0]


def test_densities_are_shares_of_held_out_tokens(cards):
    density, counts, hist = cards.stats["density"], cards.stats["fire_count"], cards.stats["histogram"]
    n = int(cards.meta["heldout_tokens"])
    assert n >= 100_000
    assert ((density >= 0) & (density <= 1)).all()
    torch.testing.assert_close(density, counts.float() / n)
    assert float(density.sum()) == pytest.approx(64, abs=0.5)  # TopK k = 64: 64 features fire at every position
    assert torch.equal(hist.sum(1).long(), counts.long())
    assert ((cards.output_scores >= 0) & (cards.output_scores <= 1)).all()


def test_the_defaults_labels_name_their_concepts(cards):
    from steering.config import load_config

    assert {f.index for f in load_config(ROOT / "demo.yaml").features} == set(CONCEPTS)
    for index, words in CONCEPTS.items():
        label = cards.label(index)
        assert set(label.replace("→", " ").replace("/", " ").split()) & words, (index, label)


def test_the_concept_ranking_finds_the_defaults(cards):
    assert 8241 in [r.index for r in features_for_concept(cards, "music", n=10)]
    assert 8672 in [r.index for r in features_for_concept(cards, "football", n=10)]
    assert 14200 in [r.index for r in features_for_concept(cards, "dogs", n=10)]


def test_most_labels_are_english_words(cards):
    from steering.offline.labelling import load_words, word_share

    assert WORDS.exists(), f"{WORDS} is missing: apt-get install wamerican (.ci/run does)"

    labels = [cards.label(i) for i in range(len(cards))]
    assert word_share(labels, load_words(WORDS)) > 0.85


def test_a_few_output_scores_recompute_on_the_real_model(cards, smollm2):
    from steering.backends.reads import output_scores
    from steering.inspection.output_score import neutral_prompt_ids
    from steering.sae import load_sae

    model, tok = smollm2
    picks = [8241, 8153, 0]
    W = load_sae(FOLDER).W_dec.float()[picks]
    got = output_scores(model, 15, W, neutral_prompt_ids(tok), float(cards.meta["output_strength"]), raised=10)
    torch.testing.assert_close(got.score, cards.output_scores[picks], rtol=1e-2, atol=1e-5)
    for row, i in enumerate(picks):  # the logit-lens tokens the contexts file shows
        assert [tok.decode([int(t)]) for t in got.tokens[row, :8]] == cards.card(i)["promotes"]
    assert (got.raised[:, :3] == cards.stats["raised"][picks, :3].long()).float().mean() >= 2 / 3
