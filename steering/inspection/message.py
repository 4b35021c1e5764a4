"""What fires on the visitor's own words: SAE codes at the tokens of their message, template left out.

Neuronpedia's rule for a readable inspector: BOS, chat-template and special tokens carry features that
fire on every prompt, and so do dense features (on a large share of all tokens), so both are left out.
The chat is run whole, as the model reads it; only the positions that lie inside the message's text
are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from steering.inspection.stats import FeatureActivation
from steering.model.chat_template import render_chat


@dataclass(frozen=True)
class MessageCodes:
    """SAE codes (T, F) at each token of the message, with the token texts."""

    tokens: list[str]
    codes: Tensor

    def without(self, dense: Tensor | None) -> "MessageCodes":
        """The codes with the features where `dense` (F,) is True set to zero."""
        if dense is None:
            return self
        return MessageCodes(self.tokens, self.codes.masked_fill(dense.to(self.codes.device), 0.0))


def message_positions(tokenizer, messages: list[dict], system_prompt: str | None = None) -> tuple[list[int], list[int]]:
    """(token ids of the rendered chat, positions whose text lies inside the last message's content).

    The content is found in the rendered text from the end; a token counts when its characters overlap
    it and it is not a special token. Templates that rewrite the content (none known) fall back to every
    non-special position after the first.
    """
    text = render_chat(tokenizer, messages, system_prompt)
    add_specials = not getattr(tokenizer, "chat_template", None)
    enc = tokenizer(text, add_special_tokens=add_specials, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    special = set(tokenizer.all_special_ids)
    content = messages[-1]["content"]
    start = text.rfind(content) if content else -1
    if start < 0:
        return ids, [i for i, t in enumerate(ids) if i > 0 and t not in special]
    end = start + len(content)
    return ids, [i for i, ((a, b), t) in enumerate(zip(offsets, ids)) if a < end and b > start and t not in special]


FUNCTION_WORDS = frozenset("""
a an the and or but nor if of to in on at by for with about from as into onto over under than then so
is are was were be been being am do does did done have has had having will would shall should can could
may might must i me my mine we us our ours you your yours he him his she her hers it its they them their
theirs this that these those what which who whom whose when where why how there here all any each some
no not yes very just too also only own same such more most much many other again up down out off
please tell let
""".split())
"""Words that carry grammar, not a topic: their features say what a sentence does, not what it is about."""


def content_positions(tokens: list[str]) -> list[int]:
    """Positions of the tokens that hold words of content: letters, and not a `FUNCTION_WORDS` word."""
    return [i for i, t in enumerate(tokens) if t.strip().isalpha() and t.strip().lower() not in FUNCTION_WORDS]


def dense_features(density: Tensor | None, max_density: float) -> Tensor | None:
    """(F,) True where a feature fires on more than `max_density` of tokens; None without densities."""
    return None if density is None else density > max_density


def top_at_last_token(msg: MessageCodes, n: int = 10) -> list[FeatureActivation]:
    """The strongest features at the message's last token."""
    return _top(msg.codes[-1], n) if len(msg.tokens) else []


def top_over_message(msg: MessageCodes, n: int = 10) -> list[tuple[FeatureActivation, int]]:
    """What the message is about: the strongest features over its words of content (`content_positions`;
    every token when it has none), each with the token where it peaks: `max_t codes[t, f]`, descending."""
    positions = content_positions(msg.tokens) or list(range(len(msg.tokens)))
    if not positions:
        return []
    peak, where = msg.codes[positions].max(dim=0)  # (F,)
    return [(a, positions[int(where[a.index])]) for a in _top(peak, n)]


def top_per_token(msg: MessageCodes, n: int = 3) -> list[list[FeatureActivation]]:
    """The `n` strongest features at each token of the message."""
    return [_top(row, n) for row in msg.codes]


def _top(code: Tensor, n: int) -> list[FeatureActivation]:
    values, indices = torch.topk(code, min(n, code.shape[-1]))
    return [FeatureActivation(int(i), float(v)) for v, i in zip(values, indices) if v > 0]
