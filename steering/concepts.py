"""Concept search: a word or phrase becomes prompts about it and a matched neutral set.

Each template is filled once with the concept and once with a neutral topic, so the two sets
differ only in what they are about; differential ranking then finds the concept's features.
"""

from __future__ import annotations

TEMPLATES = (
    "Tell me about {}.",
    "What is the most interesting thing about {}?",
    "Write a short poem about {}.",
    "I have been thinking about {} all day.",
    "Describe {} in a few sentences.",
    "Why do people care about {}?",
    "Give me three facts about {}.",
    "Explain {} to a ten-year-old.",
    "What is your opinion of {}?",
    "My friend keeps talking about {}.",
    "Write a headline about {}.",
    "What should I know about {}?",
)

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
