"""What the in-process backends (hooks, nnsight) read from a transformers model: the residual stream after a
decoder layer, and output scores.

Output score (Arad, Mueller and Belinkov, EMNLP 2025): does steering with a feature make the model
say the tokens the feature expresses?

For feature f with unit decoder direction u_f, at layer L:
- **logit-lens tokens** T_f: the k tokens with the largest `W_U (g * u_f)` (g: the final norm's weight,
  W_U: the unembedding), as the paper reads the decoder row through the final norm and the LM head
  (the norm's scale does not change the order);
- **steered distribution** p'_f: the next-token distribution on a neutral prompt with `s * u_f`
  added to the residual after layer L at the prompt's last position only (the paper adds
  `10 * max_j a_j` of the raw decoder row there; here s is one strength for every feature, on the
  layer's scale: a multiple of its typical residual norm);
- **score** on one prompt: `(1 - r_f / V) * p_f`, with `p_f = max_{t in T_f} p'_f(t)`, `r_f` the 0-based
  rank of that token in p'_f (tokens strictly more probable) and V the vocabulary size: the paper's
  `rank_output_score * top_token_score`. `output_score` is its mean over the prompts; `base` is the
  same formula on the unsteered distribution, so `score - base` is how much steering raised T_f.

Batched: every row of a forward is one feature; the prompt prefix runs once and is shared through
the KV cache, so one row costs one token through the model."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from steering.model.padding import padded
from steering.steer.hooks import StopForward, attach, capture_residual


@dataclass(frozen=True)
class OutputScores:
    """Per feature (F,): the score, its unsteered baseline, the tokens scored (F, k) and, when asked,
    the tokens steering raised most (F, n): the largest mean `log p' - log p` over the prompts."""

    score: Tensor
    base: Tensor
    tokens: Tensor
    raised: Tensor | None = None

    @property
    def gain(self) -> Tensor:
        return self.score - self.base


def residuals(model, prompts: Sequence[Sequence[int]], layer: int, pad: int = 0, batch_size: int = 8) -> list[Tensor]:
    """The residual after decoder layer `layer` at every position of each token-id prompt, (T_i, d) float32 on
    the CPU, read by running the model only up to that layer (right-padded batches, so each prompt's positions
    are the ones it has alone). Steered only where the calling thread is inside a steering block."""
    out: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [torch.tensor(list(p), dtype=torch.long) for p in prompts[start : start + batch_size]]
        lengths = [len(x) for x in chunk]
        batch, mask = padded(chunk, pad)
        with torch.inference_mode(), capture_residual(model, layer, stop_early=True) as cap:
            try:
                model(input_ids=batch.to(model.device), attention_mask=mask.to(model.device), use_cache=False)
            except StopForward:
                pass
        hidden = cap[layer]  # (B, T, d)
        out += [hidden[row, :n].float().cpu() for row, n in enumerate(lengths)]
    return out


def unit_rows(directions: Tensor) -> Tensor:
    """Each row (F, d) divided by its norm, float32."""
    return directions.float() / directions.float().norm(dim=1, keepdim=True).clamp_min(1e-12)


def unembedding(model) -> tuple[Tensor, Tensor]:
    """(W_U (V, d), g (d,)): the LM head and the final norm's weight (ones when it has none), float32."""
    W_U = model.get_output_embeddings().weight.float()
    norm = getattr(getattr(model, "model", model), "norm", None)
    g = norm.weight.float() if norm is not None and getattr(norm, "weight", None) is not None else torch.ones(W_U.shape[1])
    return W_U, g.to(W_U.device)


@torch.inference_mode()
def logit_lens(model, directions: Tensor, n: int = 20, batch: int = 2048) -> Tensor:
    """Token ids (F, n) each direction promotes most: top-n of `W_U (g * u)`."""
    W_U, g = unembedding(model)
    out = [((directions[b : b + batch].float().to(W_U.device) * g) @ W_U.T).topk(n, dim=-1).indices.cpu()
           for b in range(0, len(directions), batch)]
    return torch.cat(out) if out else torch.empty(0, n, dtype=torch.long)


def paper_score(probs: Tensor, tokens: Tensor) -> Tensor:
    """`(1 - r / V) * p` per row: p the highest probability among the row's `tokens` (B, k) (or (k,) for
    all rows), r the number of tokens more probable than it. probs (B, V)."""
    if tokens.ndim == 1:
        tokens = tokens.expand(probs.shape[0], -1)
    p = probs.gather(1, tokens.to(probs.device)).max(dim=1).values  # (B,)
    rank = (probs > p.unsqueeze(1)).sum(dim=1).float()
    return (1 - rank / probs.shape[1]) * p


def _cache_arg(model) -> str:
    """The forward's KV-cache keyword: `cache` in newer transformers 5 releases, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class _Prefix:
    """The KV cache of a prompt without its last token, repeated for a batch of rows and reused: after a
    forward appended the last token, `rows` crops it back instead of copying again."""

    def __init__(self, model, ids: Tensor):
        self.length, self.cache, self.past, self.n = ids.shape[-1] - 1, None, None, 0
        if self.length > 0:
            out = model(input_ids=ids[:-1].unsqueeze(0).to(model.device), use_cache=True)
            found = getattr(out, "cache", None)
            self.cache = found if found is not None else out.past_key_values

    def rows(self, n: int):
        if self.cache is None:
            return None
        if self.past is None or self.n != n or not getattr(self.past, "is_croppable", False):
            self.past, self.n = copy.deepcopy(self.cache), n
            if n > 1:
                self.past.batch_repeat_interleave(n)
        elif self.past.get_seq_length() > self.length:
            self.past.crop(self.length - self.past.get_seq_length())  # negative: drop that many tokens
        return self.past


def _last_logits(model, ids: Tensor, prefix: _Prefix, rows: int, layer: int | None = None,
                 shift: Tensor | None = None) -> Tensor:
    """Next-token logits (rows, V) of the prompt's last token, each row with its own residual shift at `layer`."""
    past = prefix.rows(rows)
    last = ids[-1:].to(model.device).expand(rows, 1)
    kwargs = {"input_ids": last, "use_cache": past is not None}
    if past is not None:
        kwargs[_cache_arg(model)] = past
    if shift is None:
        return model(**kwargs).logits[:, -1].float()
    add = shift.unsqueeze(1)  # (rows, 1, d)

    def steer(h: Tensor) -> Tensor:
        return (h.float() + add.to(h.device)).to(h.dtype)

    with attach(model).replacing(layer, steer):
        return model(**kwargs).logits[:, -1].float()


@torch.inference_mode()
def output_scores(model, layer: int, directions: Tensor, prompts: Sequence[Tensor], strength: float,
                  tokens: Tensor | None = None, k: int = 20, batch_size: int = 128, raised: int = 0,
                  progress: bool = False) -> OutputScores:
    """The output score of each direction (F, d) at `layer` (see the module docstring).

    `prompts`: token ids (T,) each (`inspection.output_score.neutral_prompt_ids`); `strength`: s, along the unit direction;
    `tokens`: the tokens to score, (F, k) per feature or (k,) for all (a concept's tokens), by default
    each direction's top-k logit-lens tokens; `raised`: also return that many most-raised tokens."""
    from tqdm import tqdm

    if not prompts:
        raise ValueError("output_scores needs at least one prompt")
    units = unit_rows(directions)
    tokens = logit_lens(model, units, k) if tokens is None else tokens.long().cpu()
    caches = [_Prefix(model, ids) for ids in prompts]
    base_logp = [torch.log_softmax(_last_logits(model, ids, c, 1), dim=-1) for ids, c in zip(prompts, caches)]
    F_ = len(units)
    score, base = torch.zeros(F_), torch.zeros(F_)
    top: list[Tensor] = []
    for b in tqdm(range(0, F_, batch_size), desc="output scores", disable=not progress):
        shift = strength * units[b : b + batch_size]
        rows = len(shift)
        tok = tokens[b : b + rows] if tokens.ndim == 2 else tokens
        delta = None
        for ids, cache, lp0 in zip(prompts, caches, base_logp):
            logp = torch.log_softmax(_last_logits(model, ids, cache, rows, layer, shift), dim=-1)
            score[b : b + rows] += paper_score(logp.exp(), tok).cpu()
            base[b : b + rows] += paper_score(lp0.exp().expand(rows, -1), tok).cpu()
            if raised:
                d = logp - lp0
                delta = d if delta is None else delta + d
        if raised:
            top.append(delta.topk(raised, dim=-1).indices.cpu())
    n = len(prompts)
    return OutputScores(score / n, base / n, tokens, torch.cat(top) if raised else None)
