"""Caps and cleaning for what visitors send, so one request cannot exhaust a shared Space.

Each function returns the value to use plus notices (what was changed and why), or raises
`UserError` with a message that names the problem and the fix.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import accumulate

from steering.config import GenerationSettings


class UserError(ValueError):
    """Bad input from a visitor: the message is shown to them as it is."""


@dataclass(frozen=True)
class Limits:
    max_message_chars: int = 2048
    """Longest chat message (Neuronpedia's cap)."""
    max_new_tokens: int = 512
    """Most tokens one answer may generate."""
    max_prompt_tokens: int = 2048
    """Longest conversation sent to the model; older turns are dropped to fit."""
    max_prompts_per_set: int = 64
    """Most prompts in one inspector set."""
    max_prompt_chars: int = 1000
    """Longest single inspector prompt."""
    max_custom_features: int = 8
    """Most features a visitor may add at run time."""


HISTORY_CHARS_PER_TOKEN = 16
"""Characters per token of budget beyond which old turns are dropped untokenised (text averages about 4)."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 and C1 controls; newline, tab and CR stay


def clean_text(text: str) -> str:
    """Drop control characters (keeping newlines and tabs), replace lone surrogates, normalise to NFC."""
    if not isinstance(text, str):
        raise UserError(f"expected text, got {type(text).__name__}")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return unicodedata.normalize("NFC", _CONTROL.sub("", text))


def check_message(text: str, limits: Limits) -> str:
    """A chat message ready to send: cleaned, non-empty, within the length cap."""
    text = clean_text(text).strip()
    if not text:
        raise UserError("The message is empty: type something to send.")
    if len(text) > limits.max_message_chars:
        raise UserError(f"The message has {len(text)} characters; the limit is {limits.max_message_chars}. Shorten it and send again.")
    return text


def fit_history(messages: list[dict], count_tokens: Callable[[list[dict]], int], limit: int) -> tuple[list[dict], list[str]]:
    """Drop the oldest turns until the conversation fits `limit` tokens; the last message always stays.

    The oldest exchanges go first; a conversation over `HISTORY_CHARS_PER_TOKEN` characters per token of
    budget loses its oldest exchanges without being tokenised, and the rest is searched by bisection,
    so a huge history sent through the API costs a few tokenisations, not one per exchange.
    """
    cuts = [0]  # candidate start indices, oldest exchange dropped first (as pairs, then the last lone turn)
    while len(messages) - cuts[-1] > 1:
        cuts.append(cuts[-1] + (2 if len(messages) - cuts[-1] > 2 else 1))
    before = [0, *accumulate(len(str(m.get("content", ""))) for m in messages)]  # characters before index i
    lo = 0
    while lo < len(cuts) - 1 and before[-1] - before[cuts[lo]] > limit * HISTORY_CHARS_PER_TOKEN:
        lo += 1
    hi = len(cuts) - 1
    if count_tokens(messages[cuts[lo]:]) > limit:  # bisect for the first cut that fits (token count falls as turns go)
        if count_tokens(messages[cuts[hi]:]) > limit:
            raise UserError(f"This message alone is longer than the model's {limit}-token budget. Shorten it and send again.")
        bad = lo
        while hi - bad > 1:
            mid = (bad + hi) // 2
            if count_tokens(messages[cuts[mid]:]) > limit:
                bad = mid
            else:
                hi = mid
        lo = hi
    notices = []
    if lo:
        notices.append(f"The conversation was too long: the {lo} oldest exchange(s) were left out of what the model sees.")
    return messages[cuts[lo]:], notices


def cap_generation(settings: GenerationSettings, limits: Limits) -> tuple[GenerationSettings, list[str]]:
    if settings.max_new_tokens > limits.max_new_tokens:
        note = f"Max new tokens lowered from {settings.max_new_tokens} to this server's cap of {limits.max_new_tokens}."
        return replace(settings, max_new_tokens=limits.max_new_tokens), [note]
    return settings, []


def clamp_strength(value: float, lo: float, hi: float, name: str) -> tuple[float, list[str]]:
    """A finite strength inside the slider range; NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"The strength of {name} must be a finite number, got {value!r}.")
    if value < lo or value > hi:
        kept = min(max(float(value), lo), hi)
        return kept, [f"The strength of {name} ({value:g}) was outside its range [{lo:g}, {hi:g}] and was set to {kept:g}."]
    return float(value), []


def prompt_lines(text: str, limits: Limits, what: str) -> list[str]:
    """One prompt per non-empty line, cleaned and capped."""
    lines = [line.strip() for line in clean_text(text or "").splitlines() if line.strip()]
    if not lines:
        raise UserError(f"The {what} set is empty: write one prompt per line.")
    if len(lines) > limits.max_prompts_per_set:
        raise UserError(f"The {what} set has {len(lines)} prompts; the limit is {limits.max_prompts_per_set}. Remove some lines.")
    long = [i + 1 for i, line in enumerate(lines) if len(line) > limits.max_prompt_chars]
    if long:
        raise UserError(f"Line(s) {long} of the {what} set are longer than {limits.max_prompt_chars} characters. Shorten them.")
    return lines
