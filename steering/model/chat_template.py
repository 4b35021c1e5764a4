"""Render chats once through the tokenizer's template, so BOS and control tokens come only from it."""

from __future__ import annotations

import torch
from transformers import (
    PreTrainedTokenizerBase,
)

PLAIN_TURN_STOP = "\nUser:"
"""Where a plain-completion answer ends: the transcript's next user turn."""

_ROLES = ("system", "user", "assistant")


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict],
    system_prompt: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Chat as prompt text.

    ``system_prompt=None`` keeps the template's default system turn; any string, even ``""``, replaces
    it. Templates that reject a system role get it folded into the first user turn. Tokenizers without
    a chat template get a plain ``User: ...\\nAssistant:`` transcript.
    """
    turns = _with_system(_checked(messages), system_prompt)
    if not getattr(tokenizer, "chat_template", None):
        return _plain_transcript(turns, add_generation_prompt)
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError:
        if turns[0]["role"] != "system":
            raise
        folded = _fold_system(turns)
        return tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=add_generation_prompt)


def _checked(messages: list[dict]) -> list[dict]:
    out = []
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise ValueError(
                f"messages[{i}] must be {{'role': 'user'|'assistant', 'content': str}}, got {msg!r}."
            )
        if role == "system" and i > 0:
            raise ValueError(f"messages[{i}]: a system message may only come first.")
        out.append({"role": role, "content": content})
    return out


def _with_system(turns: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt is None:
        return turns
    if turns and turns[0]["role"] == "system":
        raise ValueError("Give the system prompt either as system_prompt or as a first system message, not both.")
    return [{"role": "system", "content": system_prompt}, *turns]


def _fold_system(turns: list[dict]) -> list[dict]:
    system, rest = turns[0]["content"], turns[1:]
    if rest and rest[0]["role"] == "user" and system:
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return rest


def _plain_transcript(turns: list[dict], add_generation_prompt: bool) -> str:
    kept = [turn for turn in turns if turn["role"] != "system" or turn["content"]]
    lines = [f"{turn['role'].capitalize()}: {turn['content']}" for turn in kept]
    if add_generation_prompt:
        lines.append("Assistant:")
    return "\n".join(lines)


def encode_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict],
    system_prompt: str | None = None,
    device: torch.device | str | None = None,
) -> torch.LongTensor:
    """Token ids of the rendered chat, shape (1, T).

    With a chat template the text already holds BOS and control tokens, so the tokenizer adds none.
    The plain fallback has no BOS in its text, so there the tokenizer adds its usual specials.
    """
    text = render_chat(tokenizer, messages, system_prompt)
    add_specials = not getattr(tokenizer, "chat_template", None)
    ids = tokenizer(text, add_special_tokens=add_specials, return_tensors="pt")["input_ids"]  # (1, T)
    return ids.to(device) if device is not None else ids


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids never worth showing or steering on: declared specials plus added tokens flagged special."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
    return ids
