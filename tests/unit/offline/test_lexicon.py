"""steering/offline/lexicon.py: the evaluation's judge (keyword mentions) and prompt sets, checked exactly."""

from steering.offline.lexicon import CONCEPTS, NEUTRAL_PROMPTS, concept_for, mentions


def test_mentions_takes_whole_words_with_their_endings():
    kw = ("laugh", "galaxy", "code")
    assert mentions("She laughed all night.", kw)
    assert mentions("LAUGHING at jokes", kw)
    assert mentions("two laughs", kw)
    assert mentions("a galaxy far away", kw) and not mentions("many galaxies", kw)  # -ies is its own keyword
    assert mentions("the code's style", kw) and mentions("she coded it", kw)
    assert not mentions("a barcode", kw) and not mentions("codex", kw) and not mentions("laughter", kw)


def test_neutral_prompts_name_none_of_the_default_concepts():
    assert len(NEUTRAL_PROMPTS) == len(set(NEUTRAL_PROMPTS)) >= 20
    for name in ("football", "music", "food", "space", "happiness", "computers"):
        hits = [p for p in NEUTRAL_PROMPTS if mentions(p, CONCEPTS[name].keywords)]
        assert not hits, (name, hits)


def test_concept_for_reads_the_concept_name_in_a_label():
    assert concept_for("music (instruments)").name == "music"
    assert concept_for("Space (galaxies)").name == "space"
    assert concept_for("spaceship") is None and concept_for(None) is None
