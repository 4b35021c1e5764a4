"""Output scores asked of the backend: how much steering with a direction makes the model say given tokens
(Arad, Mueller and Belinkov, EMNLP 2025; the formula and the in-process computation: `steering.backends.reads`).

The backend answers from where the weights are: this process's model, vLLM's logprobs, a steering server."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from steering.backends.base import Backend
from steering.backends.reads import OutputScores, unit_rows
from steering.model.chat_template import encode_chat

NEUTRAL_TEXTS = ("From my experience,",)
"""Plain openers, continued as text: the paper's own neutral prompt."""
NEUTRAL_CHATS = ("Tell me about your weekend.",)
"""User turns through the chat template (a neutral prompt of `steering.offline.evaluate`): the prediction is
the first token of the answer."""


def neutral_prompt_ids(tokenizer, texts: Sequence[str] = NEUTRAL_TEXTS, chats: Sequence[str] = NEUTRAL_CHATS,
                       system_prompt: str | None = None) -> list[Tensor]:
    """Token ids (T,) of each neutral prompt: the texts as they are, the chats as a user turn."""
    ids = [tokenizer(t, return_tensors="pt")["input_ids"][0] for t in texts]
    if chats and getattr(tokenizer, "chat_template", None):
        ids += [encode_chat(tokenizer, [{"role": "user", "content": c}], system_prompt)[0] for c in chats]
    return ids


def output_scores(backend: Backend, layer: int, directions: Tensor, prompts: Sequence[Tensor], strength: float,
                  tokens: Tensor) -> OutputScores:
    """The output score of each direction (F, d) at `layer` on `tokens` (k,), the same tokens for every
    direction (a concept's), with `strength` along the unit direction, averaged over `prompts` (token ids
    (T,) each, `neutral_prompt_ids`)."""
    if not prompts:
        raise ValueError("output_scores needs at least one prompt")
    if tokens.ndim != 1:
        raise ValueError(f"output scores take one token list (k,) for every direction, got shape {tuple(tokens.shape)}")
    score, base = backend.output_scores(layer, unit_rows(directions), prompts, strength, tokens)
    return OutputScores(score, base, tokens)
