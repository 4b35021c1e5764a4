"""Read-only feature inspection: which SAE features fire on prompts, and which separate two sets.

The statistics are pure functions of codes, the (N, F) matrix of SAE activations at each
prompt's last token (definitions in the project's steering-math note). Getting codes runs the
model only up to the inspected layer and never steers: steering is scoped to the thread that
asked for it (see `hooks`), so an inspection beside a steered chat sees the plain model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .hooks import StopForward, capture_residual
from .models import encode_chat


@dataclass(frozen=True)
class FeatureActivation:
    index: int
    value: float


@dataclass(frozen=True)
class DifferentialFeature:
    """`score = mean_pos - mean_neg`; fire rates are fractions of prompts where the feature is non-zero."""

    index: int
    score: float
    mean_pos: float
    mean_neg: float
    fire_pos: float
    fire_neg: float


def _prompt_ids(tokenizer, prompt: str, chat: bool, system_prompt: str | None) -> Tensor:
    if chat:
        return encode_chat(tokenizer, [{"role": "user", "content": prompt}], system_prompt)[0]  # (T,)
    return tokenizer(prompt, return_tensors="pt")["input_ids"][0]


def padded(seqs: Sequence[Sequence[int]], pad: int, left: bool = False) -> tuple[Tensor, Tensor]:
    """Token ids (B, T) padded to one width, and the attention mask (B, T) marking the real tokens.

    Right padding keeps each sequence's positions the ones it has alone (reading residuals);
    left padding puts every sequence's last token in the last column (generating).
    """
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (B, T)
    mask = torch.zeros_like(ids)
    for row, x in enumerate(seqs):
        cols = slice(width - len(x), width) if left else slice(0, len(x))
        ids[row, cols] = torch.as_tensor(x)
        mask[row, cols] = 1
    return ids, mask


def residuals(
    model,
    tokenizer,
    prompts: Sequence[str],
    layer: int,
    chat: bool = True,
    system_prompt: str | None = None,
    batch_size: int = 8,
    last_token_only: bool = True,
) -> Tensor | list[Tensor]:
    """Residual stream after decoder layer `layer`, float32 on CPU.

    Prompts run through the chat template as a user turn (the exact input the model answers
    from) unless `chat=False`. Returns (N, d) at each prompt's last token, or a list of (T_i, d).
    Batches are right-padded, so each prompt's positions are the ones it has alone.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string: wrap it in a list")
    ids = [_prompt_ids(tokenizer, p, chat, system_prompt) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[Tensor] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        lengths = torch.tensor([len(x) for x in chunk])
        batch, mask = padded(chunk, pad)
        with torch.inference_mode(), capture_residual(model, layer, stop_early=True) as cap:
            try:
                model(input_ids=batch.to(model.device), attention_mask=mask.to(model.device), use_cache=False)
            except StopForward:
                pass
        hidden = cap[layer]  # (B, T, d)
        for row, n in enumerate(lengths.tolist()):
            out.append(hidden[row, n - 1] if last_token_only else hidden[row, :n])
    if last_token_only:
        return torch.stack(out) if out else torch.empty(0, 0)
    return out


def encode_prompts(model, tokenizer, sae, prompts: Sequence[str], layer: int | None = None, **kwargs) -> Tensor:
    """Codes (N, F): the SAE encoding of each prompt's last-token residual at the SAE's layer."""
    layer = _sae_layer(sae, layer)
    h = residuals(model, tokenizer, prompts, layer, **kwargs)  # (N, d)
    with torch.inference_mode():
        return sae.encode(h.to(sae.W_enc.device)).float().cpu()


def top_features(code: Tensor, n: int = 10) -> list[FeatureActivation]:
    """The n largest non-zero entries of one code (F,), descending."""
    values, indices = torch.sort(code, descending=True)
    keep = values != 0
    return [FeatureActivation(int(i), float(v)) for v, i in zip(values[keep][:n], indices[keep][:n])]


def top_features_for_prompt(model, tokenizer, sae, prompt: str, n: int = 10, **kwargs) -> list[FeatureActivation]:
    """The strongest features at a prompt's last token."""
    return top_features(encode_prompts(model, tokenizer, sae, [prompt], **kwargs)[0], n)


def differential_features(codes_pos: Tensor, codes_neg: Tensor, n: int = 20) -> list[DifferentialFeature]:
    """Features ranked by `mean_P(code) - mean_N(code)`, descending, with both means and fire rates."""
    if codes_pos.ndim != 2 or codes_neg.ndim != 2:
        raise ValueError("codes must be (prompts, features) matrices")
    if codes_pos.shape[1] != codes_neg.shape[1]:
        raise ValueError(
            f"the two prompt sets were encoded with different SAE widths ({codes_pos.shape[1]} vs "
            f"{codes_neg.shape[1]} features): encode both with the same SAE"
        )
    if codes_pos.shape[0] == 0 or codes_neg.shape[0] == 0:
        raise ValueError("each prompt set needs at least one prompt")
    mean_pos, mean_neg = codes_pos.float().mean(0), codes_neg.float().mean(0)  # (F,)
    fire_pos, fire_neg = fire_rate(codes_pos), fire_rate(codes_neg)
    score = mean_pos - mean_neg
    order = torch.argsort(score, descending=True)[:n]
    return [
        DifferentialFeature(int(i), float(score[i]), float(mean_pos[i]), float(mean_neg[i]), float(fire_pos[i]), float(fire_neg[i]))
        for i in order
    ]


def scan_prompts_for_feature(codes: Tensor, index: int) -> Tensor:
    """Feature `index`'s activation on every prompt (N,), 0 where it did not fire."""
    _check_index(codes, index)
    return codes[:, index].clone()


def fire_rate(codes: Tensor, index: int | None = None) -> Tensor | float:
    """Fraction of prompts where a feature is non-zero: one feature's as a float, or all (F,)."""
    rates = (codes != 0).float().mean(0)  # (F,)
    if index is None:
        return rates
    _check_index(codes, index)
    return float(rates[index])


def token_activations(
    model, tokenizer, sae, prompt: str, index: int, layer: int | None = None, chat: bool = True, system_prompt: str | None = None
) -> list[tuple[str, float]]:
    """Feature `index`'s activation at every token of the prompt, as (token text, value) pairs."""
    layer = _sae_layer(sae, layer)
    ids = _prompt_ids(tokenizer, prompt, chat, system_prompt)
    h = residuals(model, tokenizer, [prompt], layer, chat=chat, system_prompt=system_prompt, last_token_only=False)[0]
    with torch.inference_mode():
        acts = sae.encode(h.to(sae.W_enc.device))[:, index].float().cpu()  # (T,)
    return [(tokenizer.decode([int(t)]), float(a)) for t, a in zip(ids, acts)]


def format_ranking(rows: Sequence[FeatureActivation | DifferentialFeature], labels: Mapping[int, str] | None = None) -> str:
    """A plain-text table of a ranking, for consoles and notebooks."""
    labels = labels or {}
    if not rows:
        return "(no features)"
    if isinstance(rows[0], DifferentialFeature):
        lines = [f"{'rank':>4} {'feature':>8} {'score':>9} {'mean+':>9} {'mean-':>9} {'fire+':>6} {'fire-':>6}  label"]
        lines += [
            f"{r + 1:>4} {x.index:>8} {x.score:>9.3f} {x.mean_pos:>9.3f} {x.mean_neg:>9.3f} "
            f"{x.fire_pos:>6.0%} {x.fire_neg:>6.0%}  {labels.get(x.index, '')}"
            for r, x in enumerate(rows)
        ]
    else:
        lines = [f"{'rank':>4} {'feature':>8} {'activation':>11}  label"]
        lines += [f"{r + 1:>4} {x.index:>8} {x.value:>11.3f}  {labels.get(x.index, '')}" for r, x in enumerate(rows)]
    return "\n".join(line.rstrip() for line in lines)


def _check_index(codes: Tensor, index: int) -> None:
    if not 0 <= index < codes.shape[1]:
        raise IndexError(f"feature index {index} is outside this SAE (0..{codes.shape[1] - 1})")


def _sae_layer(sae, layer: int | None) -> int:
    if layer is not None:
        return layer
    found = getattr(sae, "meta", {}).get("layer")
    if found is None:
        raise ValueError("this SAE does not record its layer: pass layer=")
    return int(found)
