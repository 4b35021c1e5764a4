"""Concept search: a word or phrase becomes prompts about it and a matched neutral set.

Each template is filled once with the concept and once with a neutral topic, so the two sets
differ only in what they are about; differential ranking then finds the concept's features.
"""

from __future__ import annotations

TEMPLATES = (
    "Let me tell you about {}",
    "The most interesting thing in the world is {}",
    "I have been reading a lot about {}",
    "Today we are going to talk about {}",
    "My favourite topic is {}",
    "She could not stop thinking about {}",
    "The documentary was all about {}",
    "Everyone in the room was talking about {}",
    "He wrote a long essay on {}",
    "Our next lesson covers {}",
    "The museum has a new exhibit on {}",
    "I asked my friend what she knows about {}",
)
"""Plain text ending with the concept: read at its last token (measured on the shipped SAE, the chat
template's last token surfaces generic features that fire on every prompt)."""

NEUTRAL_TOPICS = (
    "the calendar", "a kitchen table", "the number twelve", "office supplies", "a parking lot",
    "the alphabet", "a filing cabinet", "the hallway", "a spreadsheet", "plain paper",
    "the bus schedule", "a doorknob",
)


def concept_prompt_sets(concept: str) -> tuple[list[str], list[str]]:
    """(prompts about `concept`, matched neutral prompts), one pair per template."""
    concept = " ".join(concept.split())
    if not concept:
        raise ValueError("the concept is empty: write a word or a short phrase, e.g. 'the ocean'")
    positive = [t.format(concept) for t in TEMPLATES]
    negative = [t.format(topic) for t, topic in zip(TEMPLATES, NEUTRAL_TOPICS)]
    return positive, negative
