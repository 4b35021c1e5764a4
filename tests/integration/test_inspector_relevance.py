"""The inspector on the shipped SAE shows what a message is about: template tokens and dense features left out.

Ten concept prompts, written before the filter was tuned and not changed after; for each, at least one
of the three strongest features over the message must name the concept in its label or its top tokens.
"""

import re

import pytest

from steering.config import load_config
from steering.engine import Engine
from steering.inspection.feature_info import load_feature_info
from steering.service.demo import DemoService
from steering.steer.vectors import vectors_for_config
from tests.helpers import ROOT

CONCEPTS = {  # prompt -> words that name the concept
    "Tell me about dogs": {"dog", "dogs", "puppy", "puppies", "pet", "pets"},
    "Can you recommend some good music?": {"music", "musical", "song", "songs", "band"},
    "Who won the football match last night?": {"football", "soccer", "match", "goal"},
    "Describe the ocean at night.": {"ocean", "oceans", "sea", "seas", "marine"},
    "What should I cook for dinner tonight?": {"cook", "cooking", "dinner", "meal", "lunch", "food", "recipe"},
    "Why do cats purr?": {"cat", "cats", "kitten", "purr"},
    "How far away are the stars?": {"star", "stars", "sun", "moon", "celestial", "galaxy", "planet"},
    "Will it rain tomorrow?": {"rain", "rainfall", "weather", "storm"},
    "What should I see in Paris?": {"paris", "france", "french"},
    "How do I write a Python function?": {"python", "function", "functions", "code"},
}


@pytest.fixture(scope="module")
def service(smollm2):
    config = load_config(ROOT / "demo.yaml")
    engine = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    yield DemoService(engine, info=load_feature_info(config))
    engine.close()


def names(service, index: int) -> set[str]:
    info = service.info.card(service.engine.inspector_layer, index)
    text = " ".join([info["label"] or "", *(t for t, _ in info["top_tokens"])])
    return set(re.findall(r"[a-z]+", text.lower()))


def test_a_top_three_feature_names_the_concept_for_eight_of_ten_prompts(service):
    found = {}
    for prompt, words in CONCEPTS.items():
        top = service.inspect(prompt, n=3)
        found[prompt] = [(r["index"], r["label"]) for r in top if names(service, r["index"]) & words]
    hits = [p for p, f in found.items() if f]
    assert len(hits) >= 8, f"named the concept for {len(hits)}/10: {found}"


def test_dense_features_and_template_tokens_are_left_out(service):
    density = service.densities()
    assert density is not None and 0 < float((density > 0.01).float().mean()) < 0.2
    rows = service.inspect("Tell me about your weekend.", n=10)
    assert rows and all(float(density[r["index"]]) <= 0.01 for r in rows)
    assert all(r["token"] in ("Tell", " me", " about", " your", " weekend", ".") for r in rows)
    unfiltered = service.inspect("Tell me about your weekend.", n=10, max_density=None)
    assert any(float(density[r["index"]]) > 0.01 for r in unfiltered), "the filter had something to leave out"
