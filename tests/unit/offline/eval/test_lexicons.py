"""steering/offline/eval/lexicons.py and its data files: tight lexicons match whole words only, broad ones
with their endings, labels name their concept, and a concept or version that does not exist is named as such."""

import pytest

from steering.offline.eval.lexicons import (
    BROAD,
    TIGHT,
    concept,
    concept_for,
    concept_names,
    concepts,
    matches,
    mentions,
    named_in,
)
from steering.offline.eval.splits import DataError, probe_set, split


def hit(name, text):
    return bool(matches(text, concept(name, TIGHT).words))


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


def test_the_concepts_cover_five_kinds_and_each_version_has_what_it_is_used_with():
    wanted = {"football", "music", "food", "computers", "ocean", "dogs", "paris", "japan", "cats", "weather", "space",
              "happiness", "sadness", "pirate"}
    tight, broad = concepts(TIGHT), concepts(BROAD)
    assert wanted <= set(tight) and set(tight) | set(broad) == set(concept_names())
    assert {c.kind for c in tight.values()} == {"topic", "place", "animal", "mood", "style"}
    for c in tight.values():
        assert len(c.probe_subjects) == 4 and c.system.startswith("Talk ") and c.ref == f"{c.name}@2"
    for c in broad.values():
        assert len(c.differential_prompts) == 8 and len(c.words) >= 7
        assert c.system == tight[c.name].system if c.name in tight else c.system.startswith("Talk ")


def test_labels_name_their_concept_the_first_name_in_the_label_winning():
    assert concept_for("football (ball sports)").name == "football"
    assert concept_for("sports (football)").name == "sports"
    assert concept_for("computers (Python code)").name == "computers"
    assert concept_for("something else") is None and concept_for(None) is None
    assert concept_for("Space (galaxies)", BROAD).name == "space" and concept_for("spaceship", BROAD) is None
    assert named_in("the cat and the dogs", {"dogs": 1, "cat": 2}) == 2


def test_a_missing_concept_or_version_is_an_error_naming_what_exists():
    with pytest.raises(DataError, match="no concept 'unicorns'; known: animals, archaic"):
        concept("unicorns")
    with pytest.raises(DataError, match="concept 'forest' has no lexicon version 2; it has 1"):
        concept("forest", TIGHT)


def test_broad_keywords_take_whole_words_with_their_endings():
    kw = ("laugh", "galaxy", "code")
    assert mentions("She laughed all night.", kw) and mentions("LAUGHING at jokes", kw) and mentions("two laughs", kw)
    assert mentions("a galaxy far away", kw) and not mentions("many galaxies", kw)  # -ies is its own keyword
    assert mentions("the code's style", kw) and mentions("she coded it", kw)
    assert not mentions("a barcode", kw) and not mentions("codex", kw) and not mentions("laughter", kw)


def test_no_pick_report_or_probe_prompt_names_a_concept():
    prompts = {p for name in ("pick3", "report3") for p in split(name).prompts} | set(probe_set().neutral_subjects)
    for c in concepts(TIGHT).values():
        assert not [p for p in prompts if hit(c.name, p)], c.name
    for name in ("football", "music", "food", "space", "happiness", "computers"):
        assert not [p for p in split("neutral").prompts if mentions(p, concept(name, BROAD).words)], name
