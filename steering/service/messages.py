"""Loose input from the UI and the API made into plain values: chat history turns, generation settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steering.config import GenerationSettings
from steering.config.generation import SettingsError
from steering.service import inputs
from steering.service.limits import UserError, clean_text

PAGE_NAMES = {"max_new_tokens": "Max new tokens", "temperature": "Temperature", "top_p": "Top-p",
              "repetition_penalty": "Repetition penalty", "seed": "Seed"}
"""The page's label for each generation setting (its sliders', and its messages')."""


def plain_history(history) -> list[dict]:
    """Chat history (validated by `inputs.history`) as cleaned `{"role", "content": str}` turns; blank turns
    (an answer stopped before its first token) are left out."""
    turns = [{"role": t["role"], "content": clean_text(t["content"])} for t in inputs.history(history)]
    return [t for t in turns if t["content"].strip()]


def generation_settings(given: Mapping[str, Any], base: GenerationSettings,
                        names: Mapping[str, str] | None = None) -> GenerationSettings:
    """`GenerationSettings.parse` (the one parser and its limits), its refusal a `UserError` for the visitor."""
    try:
        return GenerationSettings.parse(given, base, names)
    except SettingsError as exc:
        raise UserError(str(exc)) from None
