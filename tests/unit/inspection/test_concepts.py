"""steering.inspection.concepts: matched prompt sets for a typed concept."""

import pytest

from steering.inspection.concepts import NEUTRAL_TOPICS, TEMPLATES, concept_prompt_sets


def test_concept_prompt_sets_are_matched():
    pos, neg = concept_prompt_sets("  the   ocean ")
    assert len(pos) == len(neg) == len(TEMPLATES) == len(NEUTRAL_TOPICS)
    assert pos[0] == "Let me tell you about the ocean" and neg[0] == f"Let me tell you about {NEUTRAL_TOPICS[0]}"
    assert all(p.endswith("the ocean") for p in pos)  # read at the concept's own last token
    with pytest.raises(ValueError, match="the concept is empty"):
        concept_prompt_sets("   ")
