"""What the scorers read from the unsteered model: per-answer log-probabilities and pooled residuals.

For an answer a = (a_1..a_n) to prompt p, under the plain model (no steering, no system prompt about a concept):
- lp_prompt = sum_t log p(a_t | chat(p), a_<t);   lp_free = sum_t log p(a_t | chat(""), a_<t)
  (chat("") is the chat template with an empty user message: the same frame, no instruction);
- pooled = mean over the answer's positions of the residual after decoder layer `layer`, read in chat("")
  (`pool_answers` stops the forward pass there when only that is wanted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from steering.model.chat_template import encode_chat
from steering.model.padding import padded
from steering.steer.hooks import StopForward, capture_residual


@dataclass
class Reading:
    n: int
    lp_prompt: float
    lp_free: float
    pooled: Tensor | None  # (d,) or None without a layer, or for an empty answer


def _frames(tokenizer, prompts: Sequence[str]) -> list[Tensor]:
    return [encode_chat(tokenizer, [{"role": "user", "content": p}])[0] for p in prompts]


def _batch(frames: Sequence[Tensor], answers: Sequence[Sequence[int]], pad: int) -> tuple[Tensor, Tensor]:
    return padded([torch.cat([f, torch.tensor(list(a), dtype=torch.long)]) for f, a in zip(frames, answers)], pad)


@torch.inference_mode()
def _logprobs(model, frames: Sequence[Tensor], answers: Sequence[Sequence[int]], pad: int,
              layer: int | None) -> tuple[list[float], list[Tensor | None]]:
    """Summed log p(answer | frame) per row, and the mean residual at `layer` over the answer's positions."""
    ids, mask = _batch(frames, answers, pad)
    kwargs = {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device), "use_cache": False}
    if layer is None:
        logits, hidden = model(**kwargs).logits, None
    else:
        with capture_residual(model, layer) as cap:
            logits = model(**kwargs).logits
        hidden = cap[layer]
    sums, pooled = [], []
    for i, (f, a) in enumerate(zip(frames, answers)):
        start, n = len(f), len(a)
        if n == 0:
            sums.append(0.0)
            pooled.append(None)
            continue
        logp = torch.log_softmax(logits[i, start - 1 : start + n - 1].float().cpu(), -1)  # the answer's positions only
        sums.append(float(logp.gather(-1, ids[i, start : start + n].unsqueeze(-1)).sum()))
        pooled.append(None if hidden is None else hidden[i, start : start + n].mean(0))
    return sums, pooled


def read_answers(model, tokenizer, prompts: Sequence[str], answers: Sequence[Sequence[int]], layer: int | None = None,
                 batch_size: int = 16, with_prompt: bool = True) -> list[Reading]:
    """A `Reading` per answer; `with_prompt=False` skips lp_prompt, leaving it 0."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    free = _frames(tokenizer, [""])[0]
    out: list[Reading] = []
    for b in range(0, len(answers), batch_size):
        ans = answers[b : b + batch_size]
        lp_free, pooled = _logprobs(model, [free] * len(ans), ans, pad, layer)
        lp_prompt = (_logprobs(model, _frames(tokenizer, prompts[b : b + batch_size]), ans, pad, None)[0]
                     if with_prompt else [0.0] * len(ans))
        out += [Reading(len(a), lp, lf, h) for a, lp, lf, h in zip(ans, lp_prompt, lp_free, pooled)]
    return out


@torch.inference_mode()
def pool_answers(model, tokenizer, answers: Sequence[Sequence[int]], layer: int, batch_size: int = 16) -> list[Tensor | None]:
    """`read_answers(...)[i].pooled` alone: the forward pass stops after `layer` (no later layers, no logits)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    free = _frames(tokenizer, [""])[0]
    out: list[Tensor | None] = []
    for b in range(0, len(answers), batch_size):
        ans = answers[b : b + batch_size]
        ids, mask = _batch([free] * len(ans), ans, pad)
        with capture_residual(model, layer, stop_early=True) as cap:
            try:
                model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False)
            except StopForward:
                pass
        out += [cap[layer][i, len(free) : len(free) + len(a)].mean(0) if a else None for i, a in enumerate(ans)]
    return out
