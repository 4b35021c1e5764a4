"""Features for a concept, ranked by what they make the model say rather than by what they fire on.

Three rankings, cheapest first:
- `features_for_concept`: from the shipped data only (no model run): features whose label, top words or
  raised tokens (`says`) contain a word of the concept (also with -s/-es/-ing/-ed, or any word it begins
  when it has at least four letters: "music" finds "musical"), ranked by
  `fields matched + share of the top-word weight on concept words`, ties by output score.
- `rerank`: any candidates (e.g. `stats.differential_features`, input side) re-ranked by a per-feature
  score (F,), such as the shipped output score.
- `concept_output_scores` / `rank_concept`: the output score with the concept's own tokens in place of
  the logit-lens tokens: `(1 - r / V) * p` on the steered distribution, p the highest probability of a
  concept token and r its rank, minus the same unsteered (`OutputScores.gain`), mean over the neutral
  prompts; one model row per candidate and prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from steering.backends.reads import OutputScores
from steering.inspection.output_score import neutral_prompt_ids, output_scores

STOPWORDS = frozenset("a an the of and or in on at to for with about my your his her their its".split())


@dataclass(frozen=True)
class RankedFeature:
    index: int
    score: float
    label: str | None = None
    matched: tuple[str, ...] = ()


def concept_words(concept: str) -> list[str]:
    """The concept's content words, lower case: "the ocean" -> ["ocean"]."""
    words = [w for w in re.findall(r"[a-z][a-z'\-]*", concept.lower()) if w not in STOPWORDS]
    if not words:
        raise ValueError("the concept has no content word: write a word or a short phrase, e.g. 'the ocean'")
    return words


def _forms(word: str) -> set[str]:
    stem = word[:-1] if word.endswith("e") else word
    return {word, word + "s", word + "es", stem + "ing", stem + "ed", word.rstrip("s")}


def concept_token_ids(tokenizer, words: Sequence[str]) -> Tensor:
    """The first token of " word", " Word", "word" and "Word" for each word: what saying it starts with."""
    ids = set()
    for w in words:
        for form in (" " + w, " " + w.capitalize(), w, w.capitalize()):
            found = tokenizer(form, add_special_tokens=False)["input_ids"]
            if found:
                ids.add(int(found[0]))
    return torch.tensor(sorted(ids), dtype=torch.long)


def features_for_concept(cards, concept: str, n: int = 10) -> list[RankedFeature]:
    """Features whose shipped words name the concept (label, top words, `says`), best match first (see the
    module docstring; `cards`: `steering.inspection.cards.FeatureCards`)."""
    words = concept_words(concept)
    forms = set().union(*(_forms(w) for w in words))
    stems = tuple({s for w in words for s in (w, w.rstrip("s")) if len(s) >= 4})

    def match(found: list[str]) -> list[str]:
        return sorted({w for w in found if w in forms or (stems and w.startswith(stems))})

    scores = cards.output_scores
    found = []
    for i in range(len(cards)):
        f = cards.contexts.features[i] if cards.contexts is not None else {}
        fields = [re.findall(r"[a-z]+", f.get("label", "").lower()),
                  [w.lower() for w, _ in f.get("top_words", [])],
                  [t.strip().lower() for t in f.get("says", [])]]
        hits = [match(found) for found in fields]
        if any(hits):
            matched = tuple(sorted(set().union(*map(set, hits))))
            weights = f.get("top_words", [])
            share = sum(v for w, v in weights if match([w.lower()])) / (sum(v for _, v in weights) or 1.0)
            tie = float(scores[i]) if scores is not None else 0.0
            found.append((sum(bool(h) for h in hits) + share, tie, RankedFeature(i, 0.0, f.get("label"), matched)))
    found.sort(key=lambda x: (-x[0], -x[1]))
    return [RankedFeature(r.index, key, r.label, r.matched) for key, _, r in found[:n]]


def rerank(candidates: Sequence[int], scores: Tensor, n: int | None = None, labels=None) -> list[RankedFeature]:
    """`candidates` (feature indices, e.g. from differential activation) ordered by `scores[i]`, highest first."""
    out = [RankedFeature(int(i), float(scores[int(i)]), labels(int(i)) if labels else None) for i in candidates]
    out.sort(key=lambda r: -r.score)
    return out[:n] if n is not None else out


def concept_output_scores(backend, layer: int, directions: Tensor, concept: str, strength: float,
                          prompts: Sequence[Tensor] | None = None) -> OutputScores:
    """The output score of each direction (F, d) on the concept's tokens (`gain`: steered minus unsteered),
    from `backend` (`steering.backends.base.Backend`)."""
    tokens = concept_token_ids(backend.tokenizer, concept_words(concept))
    prompts = neutral_prompt_ids(backend.tokenizer) if prompts is None else prompts
    return output_scores(backend, layer, directions, prompts, strength, tokens)


def rank_concept(backend, layer: int, directions: Tensor, candidates: Sequence[int], concept: str,
                 strength: float, n: int | None = None, labels=None) -> list[RankedFeature]:
    """`candidates` re-ranked by how much steering with each raises the concept's tokens (`gain`).
    `directions`: all decoder rows (F, d) or the SAE's `W_dec`; only the candidates' rows run."""
    idx = torch.tensor([int(i) for i in candidates], dtype=torch.long)
    scores = concept_output_scores(backend, layer, directions[idx], concept, strength)
    full = torch.full((len(directions),), float("-inf"))
    full[idx] = scores.gain
    return rerank(candidates, full, n, labels)
