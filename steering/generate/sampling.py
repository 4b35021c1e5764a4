"""Token choice for one row: repetition penalty, temperature, top-p, from the request's own generator.

Each request draws from its own seeded `torch.Generator` (why: `generate` samples from torch's
global RNG, which concurrent requests share, so a seed would not make a run reproducible while
another one is running).
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import RepetitionPenaltyLogitsProcessor


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Mask (to -inf) the tokens outside the smallest set whose probability reaches top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p  # the first token is always kept
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


TOP_P_CANDIDATES = 1024
"""Tokens ranked before applying top-p; the full vocabulary is sorted only when these hold less than top_p."""


def top_p_candidates(logits: Tensor, top_p: float) -> tuple[Tensor, Tensor]:
    """(token ids, probabilities) of the top-p set of one row's logits (V,), most probable first.

    The set is `top_p_filter`'s: the smallest prefix of the tokens by probability whose mass reaches
    top_p. Why not sort all V: ranking only the first `TOP_P_CANDIDATES` (a top-k, ~10x cheaper than a
    49k sort on a CPU) finds the same prefix whenever it reaches top_p within them, which is the usual case.
    """
    lse = torch.logsumexp(logits, dim=-1)
    k = min(TOP_P_CANDIDATES, logits.shape[-1])
    while True:
        values, ids = logits.topk(k)
        probs = (values - lse).exp()
        mass_before = probs.cumsum(dim=-1) - probs
        keep = mass_before < top_p  # the first token is always kept
        if not bool(keep[-1]) or k == logits.shape[-1]:
            return ids[keep], probs[keep]
        k = logits.shape[-1]


def sample_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """Token ids (B,) drawn from `softmax(top_p(logits / temperature))`; argmax at temperature 0."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_p >= 1.0:
        return torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(-1)
    chosen = []
    for row in scaled:
        ids, probs = top_p_candidates(row, top_p)
        chosen.append(ids[torch.multinomial(probs, 1, generator=generator)])
    return torch.cat(chosen)


def seeded_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A request's own random generator: seeded, or from fresh entropy when `seed` is None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def repetition_penalty(scores: Tensor, seen_ids: Tensor, penalty: float) -> Tensor:
    """transformers' repetition penalty on one row (1, V), over that row's own token ids `seen_ids` (1, L)."""
    if penalty == 1.0 or seen_ids.numel() == 0:
        return scores
    return RepetitionPenaltyLogitsProcessor(penalty)(seen_ids, scores)
