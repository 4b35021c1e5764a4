"""steering/offline/axbench_concepts.py and `lexicon.matches`: tight lexicons match whole words only, and
the probe's prompts, the pick split and the report split never overlap."""

import pytest

from steering.offline.axbench_concepts import (
    NEUTRAL_SUBJECTS,
    PICK_PROMPTS,
    PROBE_TEMPLATES,
    REPORT2_PROMPTS,
    REPORT3_PROMPTS,
    REPORT_PROMPTS,
    TIGHT,
    neutral_probe_prompts,
    tight_concept_for,
)
from steering.offline.lexicon import CONCEPTS, matches, mentions


def hit(name, text):
    return bool(matches(text, TIGHT[name].words))


@pytest.mark.parametrize("name,text", [
    ("cats", "My cats sleep all day."), ("cats", "A KITTEN!"), ("football", "He watched the World Cup final."),
    ("football", "the striker's goal"), ("ocean", "We swam in the sea."), ("music", "She played the guitar."),
    ("computers", "I wrote it in Python."), ("paris", "a trip to Paris"), ("weather", "It was raining."),
    ("space", "Astronauts orbit the Earth."), ("food", "a baked cake with chocolate"), ("pirate", "Ahoy, matey!"),
    ("sadness", "She was heartbroken."), ("japan", "sushi in Tokyo"), ("dogs", "two puppies"),
])
def test_tight_lexicon_hits(name, text):
    assert hit(name, text)


@pytest.mark.parametrize("name,text", [
    ("cats", "Pick a category and concatenate."), ("ocean", "This season I do research."),
    ("football", "Our team won the game with a high score."), ("food", "I eat lunch; it tastes fine."),
    ("music", "The band of friends kept the rhythm of life."), ("computers", "a dress code"),
    ("pirate", "Yes, yesterday."), ("happiness", "I am happy to help."), ("space", "a star player on the planet"),
    ("weather", "a brainstorm in the cloud"), ("paris", "comparison"), ("dogs", "dogma"),
])
def test_tight_lexicon_misses_broad_words_and_word_parts(name, text):
    assert not hit(name, text)


def test_matches_lists_hits_in_order_and_keeps_mentions():
    assert matches("Cats and a kitten, then more cats.", ["cat", "kitten"]) == ["cat", "kitten", "cat"]
    assert matches("the world cup", ["world cup", "world"]) == ["world cup"]
    assert matches("nothing", []) == [] and not mentions("nothing", [])
    assert mentions("She laughed.", ["laugh"]) and not mentions("laughter", ["laugh"])


def test_the_brief_s_concepts_are_covered_with_four_kinds():
    wanted = {"football", "music", "food", "computers", "ocean", "dogs", "paris", "japan", "cats", "weather", "space",
              "happiness", "sadness", "pirate"}
    assert wanted <= set(TIGHT)
    assert {c.kind for c in TIGHT.values()} >= {"topic", "place", "animal", "mood", "style"}
    for c in TIGHT.values():
        assert len(c.subjects) == 4 and len(c.probe_prompts()) == 4 * len(PROBE_TEMPLATES)
        assert c.system.startswith("Talk ")
        if c.name in CONCEPTS:
            assert c.system == CONCEPTS[c.name].system  # the same baseline as evaluate.py


def test_labels_name_their_tight_concept():
    assert tight_concept_for("football (ball sports)").name == "football"
    assert tight_concept_for("computers (Python code)").name == "computers"
    assert tight_concept_for("something else") is None


def test_splits_and_probe_prompts_are_disjoint_and_neutral():
    assert not set(PICK_PROMPTS) & set(REPORT_PROMPTS)
    probe = set(neutral_probe_prompts()) | {p for c in TIGHT.values() for p in c.probe_prompts()}
    assert not probe & (set(PICK_PROMPTS) | set(REPORT_PROMPTS))
    assert len(REPORT_PROMPTS) >= 24 and len(set(REPORT_PROMPTS)) == len(REPORT_PROMPTS)
    for c in TIGHT.values():
        assert not [p for p in REPORT_PROMPTS + list(NEUTRAL_SUBJECTS) if hit(c.name, p)], c.name
        assert not [p for p in PICK_PROMPTS if hit(c.name, p)], c.name


@pytest.mark.parametrize("report,before", [(REPORT2_PROMPTS, PICK_PROMPTS + REPORT_PROMPTS),
                                            (REPORT3_PROMPTS, PICK_PROMPTS + REPORT_PROMPTS + REPORT2_PROMPTS)])
def test_each_later_report_split_is_new_and_neutral(report, before):
    seen = set(before) | set(neutral_probe_prompts()) | {p for c in TIGHT.values() for p in c.probe_prompts()}
    assert len(set(report)) == len(report) == 32
    assert not seen & set(report)
    for c in TIGHT.values():
        assert not [p for p in report if hit(c.name, p)], c.name
