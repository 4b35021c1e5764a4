"""Loose input from the UI and the API made into plain values: chat history turns, generation settings."""

from __future__ import annotations

from typing import Sequence

from steering.config import GenerationSettings
from steering.service.limits import UserError, clean_text


def message_text(content) -> str:
    """Text of a chat message's content: a string, or Gradio 6's list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", "")) if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return ""


def plain_history(history: Sequence[dict] | None) -> list[dict]:
    """Gradio chat history as `{"role", "content": str}` turns, user and assistant only."""
    turns = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            text = clean_text(message_text(m.get("content")))
            if text.strip():
                turns.append({"role": m["role"], "content": text})
    return turns


def generation_settings(max_new_tokens, temperature, top_p, repetition_penalty, seed) -> GenerationSettings:
    """Generation settings from loose values (sliders, API numbers); a seed below 0 means random."""
    try:
        return GenerationSettings(
            max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_p=float(top_p),
            repetition_penalty=float(repetition_penalty),
            seed=None if seed in (None, "") or int(seed) < 0 else int(seed),
        )
    except (TypeError, ValueError) as exc:
        raise UserError(f"Generation settings: {str(exc).splitlines()[-1]}") from None
