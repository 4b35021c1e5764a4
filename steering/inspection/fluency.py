"""How likely the plain model finds an answer after its prompt: the fluency half of every steering score.

`log p(answer | prompt)` under the unsteered model, teacher-forced; a steered answer's perplexity over the
unsteered answers' is the fluency ratio (docs/steering-eval.md). Reads the weights directly, so it needs a
backend that holds them in this process (hooks or nnsight)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from steering.model.padding import padded


@torch.inference_mode()
def answer_logprobs(model, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], pad: int = 0,
                    batch_size: int = 16) -> list[tuple[float, int]]:
    """Per row, `(sum_t log p(a_t | prompt, a_<t), len(a))` under `model` with no steering active."""
    out: list[tuple[float, int]] = []
    for b in range(0, len(prompts), batch_size):
        frames = [torch.tensor(list(p), dtype=torch.long) for p in prompts[b : b + batch_size]]
        ans = [list(a) for a in answers[b : b + batch_size]]
        rows = [torch.cat([f, torch.tensor(a, dtype=torch.long)]) for f, a in zip(frames, ans)]
        ids, mask = padded(rows, pad)
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False).logits
        logp = torch.log_softmax(logits.float().cpu(), -1)
        for i, (f, a) in enumerate(zip(frames, ans)):
            start, n = len(f), len(a)
            if n == 0:
                out.append((0.0, 0))
                continue
            target: Tensor = ids[i, start : start + n]
            out.append((float(logp[i, start - 1 : start + n - 1].gather(-1, target.unsqueeze(-1)).sum()), n))
    return out


def perplexity(rows: Sequence[tuple[float, int]]) -> float:
    """`exp(-sum log p / sum tokens)` pooled over rows; nan when there is no token."""
    n = sum(k for _, k in rows)
    return math.exp(-sum(lp for lp, _ in rows) / n) if n else float("nan")
