"""Residuals and SAE codes of prompts, read by running the model only up to the inspected layer.

Never steers: steering is scoped to the thread that asked for it, so an inspection beside a
steered chat sees the plain model."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from steering.inspection.message import MessageCodes, message_positions
from steering.inspection.stats import FeatureActivation, top_features
from steering.model.chat_template import encode_chat
from steering.model.padding import padded
from steering.steer.hooks import StopForward, capture_residual


def _prompt_ids(tokenizer, prompt: str, chat: bool, system_prompt: str | None) -> Tensor:
    if chat:
        return encode_chat(tokenizer, [{"role": "user", "content": prompt}], system_prompt)[0]  # (T,)
    return tokenizer(prompt, return_tensors="pt")["input_ids"][0]


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
    rows = read_ids(model, [x.tolist() for x in ids], layer, pad, batch_size)
    if last_token_only:
        return torch.stack([r[-1] for r in rows]) if rows else torch.empty(0, 0)
    return rows


def read_ids(model, prompts: Sequence[Sequence[int]], layer: int, pad: int = 0, batch_size: int = 8) -> list[Tensor]:
    """Residual after decoder layer `layer` at every position of each token-id prompt, (T_i, d) float32 on
    CPU: from the model (right-padded batches, so positions are each prompt's own), or from the serving
    engine that holds the weights (`read_residuals`)."""
    if hasattr(model, "read_residuals"):
        return model.read_residuals(prompts, layer)
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


def encode_prompts(model, tokenizer, sae, prompts: Sequence[str], layer: int | None = None, **kwargs) -> Tensor:
    """Codes (N, F): the SAE encoding of each prompt's last-token residual at the SAE's layer."""
    layer = _sae_layer(sae, layer)
    h = residuals(model, tokenizer, prompts, layer, **kwargs)  # (N, d)
    with torch.inference_mode():
        return sae.encode(h.to(sae.W_enc.device)).float().cpu()


def top_features_for_prompt(model, tokenizer, sae, prompt: str, n: int = 10, **kwargs) -> list[FeatureActivation]:
    """The strongest features at a prompt's last token."""
    return top_features(encode_prompts(model, tokenizer, sae, [prompt], **kwargs)[0], n)


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


def message_codes(model, tokenizer, sae, message: str, layer: int | None = None, system_prompt: str | None = None) -> MessageCodes:
    """SAE codes at each token of `message`, read from the whole chat as the model answers from it."""
    layer = _sae_layer(sae, layer)
    ids, keep = message_positions(tokenizer, [{"role": "user", "content": message}], system_prompt)
    h = read_ids(model, [ids], layer)[0]
    with torch.inference_mode():
        codes = sae.encode(h[keep].to(sae.W_enc.device)).float().cpu()  # (T_message, F)
    return MessageCodes([tokenizer.decode([ids[i]]) for i in keep], codes)


def _sae_layer(sae, layer: int | None) -> int:
    if layer is not None:
        return layer
    found = getattr(sae, "meta", {}).get("layer")
    if found is None:
        raise ValueError("this SAE does not record its layer: pass layer=")
    return int(found)


NORM_TEXTS = (
    "The weather was mild, so we walked to the market and bought bread, cheese and a few apples.",
    "To install the package, run the command below and then restart your terminal.",
    "She asked whether the meeting could be moved to Thursday afternoon instead.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "I'm sorry to hear that. Would you like some tips on getting better sleep?",
    "The committee approved the budget after a long debate about school funding.",
)


def typical_norm(model, tokenizer, layer: int, texts: Sequence[str] = NORM_TEXTS) -> float:
    """Mean residual norm at `layer` over ordinary text, the first position left out (its norm is an
    outlier in most models): what makes a strength mean something on this layer."""
    h = residuals(model, tokenizer, list(texts), layer, chat=False, last_token_only=False)
    return float(torch.cat([x[1:].norm(dim=-1) for x in h]).mean())
