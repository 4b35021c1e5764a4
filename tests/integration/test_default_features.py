"""Each default feature of demo.yaml, at its configured strength and mode, raises the probability of its
concept's tight-lexicon words on a fixed neutral prompt (real SmolLM2, the shipped SAE, one forward each).

The prompt is a neutral request and the start of a neutral answer, read teacher-forced; the measure is the
next-token probability mass on the concept's words that are one token each (" dog", " Dog", "dog", "Dog"),
averaged over the answer's positions. Steering must multiply it by at least `MIN_GAIN`."""

import pytest
import torch

from steering.config import load_config
from steering.model.chat_template import encode_chat
from steering.offline.eval.lexicons import concept_for
from tests.helpers import ROOT

PROMPT = "Tell me something."
ANSWER = "Sure! Here is something I find interesting about the way people spend an ordinary day"
MIN_GAIN = 10.0  # seen: x34 (food) to x324 (sports)
FEATURES = load_config(ROOT / "demo.yaml").features


@pytest.fixture(scope="module")
def engine():
    from steering.engine import Engine

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    e = Engine.from_config(str(ROOT / "demo.yaml"), device="cpu", dtype="float32")
    yield e
    e.close()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inputs(engine):
    tok = engine.tokenizer
    prompt = encode_chat(tok, [{"role": "user", "content": PROMPT}])
    answer = tok(ANSWER, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return torch.cat([prompt, answer], 1), prompt.shape[1] - 1  # positions from the answer's first token


def word_tokens(tokenizer, words) -> torch.Tensor:
    ids = set()
    for w in words:
        for form in (" " + w, " " + w.capitalize(), w, w.capitalize()):
            found = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(found) == 1:
                ids.add(found[0])
    return torch.tensor(sorted(ids), dtype=torch.long)


@torch.inference_mode()
def concept_mass(engine, ids, start, tokens, plan=None) -> float:
    with engine.backend.hooks.steering(plan):
        logits = engine.model(input_ids=ids, use_cache=False).logits[0, start:].float()
    return float(torch.softmax(logits, -1)[:, tokens].sum(-1).mean())


def test_the_defaults_cover_eight_concepts_of_four_kinds():
    concepts = [concept_for(f.label) for f in FEATURES]
    assert all(concepts), [f.label for f, c in zip(FEATURES, concepts) if c is None]
    assert len({c.name for c in concepts}) == len(FEATURES) >= 8
    assert len({c.kind for c in concepts} & {"topic", "place", "animal", "mood", "style"}) >= 4
    assert [f.enabled for f in FEATURES].count(True) == 1


@pytest.mark.parametrize("feature", FEATURES, ids=[f.label for f in FEATURES])
def test_each_default_feature_raises_its_concept_words(engine, inputs, feature):
    ids, start = inputs
    concept = concept_for(feature.label)
    tokens = word_tokens(engine.tokenizer, [w for w in concept.words if " " not in w])
    assert len(tokens) >= 3, concept.name
    plain = concept_mass(engine, ids, start, tokens)
    plan = engine.plan({feature.key: feature.strength}, mode=feature.mode, features=[feature])
    steered = concept_mass(engine, ids, start, tokens, plan)
    print(f"{concept.name}: {plain:.2e} -> {steered:.2e} (x{steered / plain:.1f})")
    assert steered > MIN_GAIN * plain, (concept.name, plain, steered)
