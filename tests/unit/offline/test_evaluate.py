"""The steering evaluation's judge and prompt sets, checked exactly (the sweep itself is measured, not tested)."""


from steering.offline.evaluate import (
    CONCEPTS,
    NEUTRAL_PROMPTS,
    concept_for,
    markdown_table,
    mentions,
)


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


def test_markdown_table_marks_settings_that_meet_the_target():
    run = {"mode": "add", "strength": 40.0, "inclusion": 0.75, "fluency_ratio": 1.9, "text_fluency_ratio": 1.5}
    miss = dict(run, strength=60.0, inclusion=0.95, fluency_ratio=2.1)
    result = {"features": [{"label": "music", "key": "L15:1", "unsteered_inclusion": 0.05,
                            "system_prompt": {"inclusion": 0.1, "fluency_ratio": 1.1}, "runs": [run, miss]}]}
    lines = markdown_table(result).splitlines()
    assert lines[4] == "| music (L15:1) | add | 40 | 75% ✓ | 1.90 | 1.50 |"
    assert lines[5] == "| music (L15:1) | add | 60 | 95% | 2.10 | 1.50 |"
    assert "system prompt | - | 10% | 1.10 | - |" in lines[3]
