"""Loose input from the UI and the API made into plain values: chat history turns, generation settings."""

from __future__ import annotations

from steering.config import GenerationSettings
from steering.service import inputs
from steering.service.limits import clean_text

SEED_MAX = 2**63 - 1
"""Largest seed torch takes; a negative seed means a random one."""


def plain_history(history) -> list[dict]:
    """Chat history (validated by `inputs.history`) as cleaned `{"role", "content": str}` turns; blank turns
    (an answer stopped before its first token) are left out."""
    turns = [{"role": t["role"], "content": clean_text(t["content"])} for t in inputs.history(history)]
    return [t for t in turns if t["content"].strip()]


def generation_settings(max_new_tokens, temperature, top_p, repetition_penalty, seed) -> GenerationSettings:
    """Generation settings from sliders or API numbers, each checked by name; a seed that is None or below 0
    means random."""
    seed = None if seed is None else inputs.whole_number(seed, "seed", hi=SEED_MAX, what="a whole number (-1 for a random seed)")
    return GenerationSettings(
        max_new_tokens=inputs.whole_number(max_new_tokens, "max_new_tokens", lo=1),
        temperature=inputs.number(temperature, "temperature", lo=0),
        top_p=inputs.number(top_p, "top_p", lo=0, hi=1, above=True),
        repetition_penalty=inputs.number(repetition_penalty, "repetition_penalty", lo=0, above=True),
        seed=None if seed is None or seed < 0 else seed,
    )
