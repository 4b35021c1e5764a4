"""Residuals and SAE codes of prompts, read through the backend from wherever the weights are.

Unsteered unless a `plan` is given: steering is scoped to its request, so an inspection beside a
steered chat sees the plain model."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from steering.backends.base import Backend
from steering.inspection.message import MessageCodes, message_positions
from steering.model.chat_template import encode_chat
from steering.steer.plan import SteeringPlan


def _prompt_ids(tokenizer, prompt: str, chat: bool, system_prompt: str | None) -> Tensor:
    if chat:
        return encode_chat(tokenizer, [{"role": "user", "content": prompt}], system_prompt)[0]  # (T,)
    return tokenizer(prompt, return_tensors="pt")["input_ids"][0]


def residuals(
    backend: Backend,
    prompts: Sequence[str],
    layer: int,
    chat: bool = True,
    system_prompt: str | None = None,
    last_token_only: bool = True,
    plan: SteeringPlan | None = None,
) -> Tensor | list[Tensor]:
    """Residual stream after decoder layer `layer`, float32 on CPU.

    Prompts run through the chat template as a user turn (the exact input the model answers
    from) unless `chat=False`. Returns (N, d) at each prompt's last token, or a list of (T_i, d).
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string: wrap it in a list")
    ids = [_prompt_ids(backend.tokenizer, p, chat, system_prompt).tolist() for p in prompts]
    rows = backend.read_residuals(ids, layer, plan)
    if last_token_only:
        return torch.stack([r[-1] for r in rows]) if rows else torch.empty(0, 0)
    return rows


def encode_prompts(backend: Backend, sae, prompts: Sequence[str], layer: int | None = None, **kwargs) -> Tensor:
    """Codes (N, F): the SAE encoding of each prompt's last-token residual at the SAE's layer."""
    layer = _sae_layer(sae, layer)
    h = residuals(backend, prompts, layer, **kwargs)  # (N, d)
    with torch.inference_mode():
        return sae.encode(h.to(sae.W_enc.device)).float().cpu()


def token_activations(backend: Backend, sae, prompt: str, index: int, layer: int | None = None, chat: bool = True,
                      system_prompt: str | None = None) -> list[tuple[str, float]]:
    """Feature `index`'s activation at every token of the prompt, as (token text, value) pairs."""
    layer = _sae_layer(sae, layer)
    tokenizer = backend.tokenizer
    ids = _prompt_ids(tokenizer, prompt, chat, system_prompt)
    h = residuals(backend, [prompt], layer, chat=chat, system_prompt=system_prompt, last_token_only=False)[0]
    with torch.inference_mode():
        acts = sae.encode(h.to(sae.W_enc.device))[:, index].float().cpu()  # (T,)
    return [(tokenizer.decode([int(t)]), float(a)) for t, a in zip(ids, acts)]


def message_codes(backend: Backend, sae, message: str, layer: int | None = None, system_prompt: str | None = None,
                  plan: SteeringPlan | None = None) -> MessageCodes:
    """SAE codes at each token of `message`, read from the whole chat as the model answers from it."""
    layer = _sae_layer(sae, layer)
    tokenizer = backend.tokenizer
    ids, keep = message_positions(tokenizer, [{"role": "user", "content": message}], system_prompt)
    h = backend.read_residuals([ids], layer, plan)[0]
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


def typical_norm(backend: Backend, layer: int, texts: Sequence[str] = NORM_TEXTS) -> float:
    """Mean residual norm at `layer` over ordinary text, the first position left out (its norm is an
    outlier in most models): what makes a strength mean something on this layer."""
    h = residuals(backend, list(texts), layer, chat=False, last_token_only=False)
    return float(torch.cat([x[1:].norm(dim=-1) for x in h]).mean())
