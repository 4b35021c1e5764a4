"""A concept vector from a phrase: the difference of means of residuals on text about it and on neutral text.

Two kinds of examples (`source`):
- `generated` (the default): the model answers `TEMPLATES` about the phrase and, with the same templates, about
  neutral topics (`NEUTRAL_TOPICS`); the residuals of the answers' tokens, read in the whole chat, are averaged.
  Text that talks about the concept throughout, which is what steering should produce (AxBench's DiffMean).
- `written`: the concept search's plain sentences (`concepts.concept_prompt_sets`), every position but the
  first; no generation, so it is fast, but the two sets differ only where the phrase is written, so the vector
  leans toward the phrase's own tokens.
Answers are sampled at temperature 0.7 with seeds `1000 * seed + i`, so one (phrase, layer, source, seed) always
gives the same vector: a share link carries the recipe, not the numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from steering.inspection.concepts import NEUTRAL_TOPICS, concept_prompt_sets
from steering.steer.concept import Decomposition, diff_of_means, least_squares, top_cosines

TEMPLATES = (
    "Write a short paragraph about {}.", "Tell me about {}.", "Describe {} to a friend.",
    "What is interesting about {}?", "Write a few sentences about {}.", "Explain {} to a child.",
    "Give me three facts about {}.", "Write a short story about {}.",
)
SOURCES = ("generated", "written")
PHRASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 '\-]{0,59}$")
"""What a concept phrase may be: letters, digits, spaces, apostrophes and hyphens, 1-60 characters (it travels
in share links and keys)."""


@dataclass(frozen=True)
class ConceptVector:
    """A unit steering direction for `phrase` at `layer`, how it was made, and the SAE features it resembles."""

    phrase: str
    layer: int
    direction: Tensor  # (d,) unit, float32
    norm: float  # ||v|| of the raw difference of means
    source: str
    seed: int
    positions: tuple[int, int]  # residual positions averaged (about the phrase, neutral)
    top: tuple[tuple[int, float], ...] = ()  # (feature, cosine) of the layer's SAE, highest first
    decomposition: Decomposition | None = None


def check_phrase(phrase: object) -> str:
    """The phrase, spaces collapsed; a ValueError naming the value and the fix otherwise."""
    text = " ".join(str(phrase).split()) if isinstance(phrase, str) else None
    if not text or not PHRASE.match(text):
        raise ValueError(f"concept {phrase!r}: write 1-60 letters, digits, spaces, apostrophes or hyphens, "
                         "e.g. 'the ocean'")
    return text


def _generated(engine, phrase: str, n: int, max_new_tokens: int, seed: int, layer: int) -> tuple[Tensor, Tensor]:
    settings = replace(engine.config.generation, max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9)
    chats = [[{"role": "user", "content": t.format(topic)}] for topic in (phrase,) for t in TEMPLATES[:n]]
    chats += [[{"role": "user", "content": TEMPLATES[i % len(TEMPLATES)].format(NEUTRAL_TOPICS[i])}] for i in range(n)]
    requests = [engine.request(c, None, replace(settings, seed=1000 * seed + i)) for i, c in enumerate(chats)]
    engine.run_now(requests)
    ids, starts = [], []
    for r in requests:
        if r.error is not None:
            raise r.error
        prompt = [int(t) for t in r.spec.input_ids[0].tolist()]
        ids.append(prompt + [int(t) for t in r.tokens])
        starts.append(len(prompt))
    rows = engine.read_ids(ids, layer)
    answers = [h[s:] for h, s in zip(rows, starts)]
    return torch.cat(answers[:n]), torch.cat(answers[n:])


def _written(engine, phrase: str, layer: int) -> tuple[Tensor, Tensor]:
    pos, neg = concept_prompt_sets(phrase)
    tok = engine.tokenizer
    ids = [tok(text, add_special_tokens=False)["input_ids"] for text in pos + neg]
    rows = engine.read_ids(ids, layer)
    return torch.cat([h[1:] for h in rows[: len(pos)]]), torch.cat([h[1:] for h in rows[len(pos):]])


def build_concept_vector(engine, phrase: str, layer: int, source: str = "generated", seed: int = 0, n: int = 8,
                         max_new_tokens: int = 48, decoder: Tensor | None = None) -> ConceptVector:
    """The concept vector of `phrase` at `layer` (see the module docstring); with the layer's SAE `decoder`
    (F, d), also its top cosine features and an 8-term least-squares decomposition over them."""
    phrase = check_phrase(phrase)
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: use one of {', '.join(SOURCES)}")
    if not 1 <= n <= len(TEMPLATES):
        raise ValueError(f"n={n}: use 1 to {len(TEMPLATES)} examples")
    pos, neg = (_generated(engine, phrase, n, max_new_tokens, seed, layer) if source == "generated"
                else _written(engine, phrase, layer))
    v = diff_of_means(pos, neg)
    norm = float(v.norm())
    u = v / max(norm, 1e-12)
    top, parts = (), None
    if decoder is not None:
        top = tuple(top_cosines(u, decoder, 10))
        parts = least_squares(u, decoder, 8)
    return ConceptVector(phrase, layer, u, norm, source, seed, (len(pos), len(neg)), top, parts)


def describe(cv: ConceptVector, label=lambda i: None, n: int = 5) -> str:
    """One line a visitor can read: what the vector is closest to among the SAE's features."""
    def name(i: int) -> str:
        found = label(i)
        return f"#{i}" + (f" ({found})" if found else "")

    parts = [f"concept vector for {cv.phrase!r} at layer {cv.layer} ({cv.source} examples, "
             f"{cv.positions[0]} vs {cv.positions[1]} positions)"]
    if cv.top:
        parts.append("closest features: " + ", ".join(f"{name(i)} cos {c:.2f}" for i, c in cv.top[:n]))
    if cv.decomposition is not None:
        terms = ", ".join(f"{c:+.2f} x {name(i)}" for i, c in cv.decomposition.terms[:n])
        parts.append(f"least squares: {terms}; {len(cv.decomposition.terms)} features explain "
                     f"{cv.decomposition.explained:.0%} of it")
    return "; ".join(parts)


def examples_text(phrase: str, n: int = 8) -> Sequence[str]:
    """The prompts a `generated` vector's concept answers reply to (shown to visitors on request)."""
    return [t.format(check_phrase(phrase)) for t in TEMPLATES[:n]]
