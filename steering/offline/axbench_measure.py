"""What the AxBench-style scorer reads from the unsteered model: per-answer log-probabilities and pooled
residuals, and unsteered answers generated through the serving path (cached on disk).

For an answer a = (a_1..a_n) to prompt p, under the plain model (no steering, no system prompt about a concept):
- lp_prompt = sum_t log p(a_t | chat(p), a_<t);   lp_free = sum_t log p(a_t | chat(""), a_<t)
  (chat("") is the chat template with an empty user message: the same frame, no instruction);
- pooled = mean over the answer's positions of the residual after decoder layer `layer`, read in chat("")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor


@dataclass
class Reading:
    n: int
    lp_prompt: float
    lp_free: float
    pooled: Tensor | None  # (d,) or None without a layer, or for an empty answer


def _frames(tokenizer, prompts: Sequence[str]) -> list[Tensor]:
    from steering.model.chat_template import encode_chat

    return [encode_chat(tokenizer, [{"role": "user", "content": p}])[0] for p in prompts]


@torch.inference_mode()
def _logprobs(model, frames: Sequence[Tensor], answers: Sequence[Sequence[int]], pad: int,
              layer: int | None) -> tuple[list[float], list[Tensor | None]]:
    """Summed log p(answer | frame) per row, and the mean residual at `layer` over the answer's positions."""
    from steering.model.padding import padded
    from steering.steer.hooks import capture_residual

    rows = [torch.cat([f, torch.tensor(list(a), dtype=torch.long)]) for f, a in zip(frames, answers)]
    ids, mask = padded(rows, pad)
    if layer is None:
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False).logits
        hidden = None
    else:
        with capture_residual(model, layer) as cap:
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False).logits
        hidden = cap[layer]
    logp = torch.log_softmax(logits.float().cpu(), -1)
    sums, pooled = [], []
    for i, (f, a) in enumerate(zip(frames, answers)):
        start, n = len(f), len(a)
        if n == 0:
            sums.append(0.0)
            pooled.append(None)
            continue
        tgt = ids[i, start : start + n]
        sums.append(float(logp[i, start - 1 : start + n - 1].gather(-1, tgt.unsqueeze(-1)).sum()))
        pooled.append(None if hidden is None else hidden[i, start : start + n].mean(0))
    return sums, pooled


def read_answers(model, tokenizer, prompts: Sequence[str], answers: Sequence[Sequence[int]], layer: int | None = None,
                 batch_size: int = 16, with_prompt: bool = True) -> list[Reading]:
    """A `Reading` per answer; `with_prompt=False` skips lp_prompt (probe texts), leaving it 0."""
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


def cache_dir() -> Path:
    from steering.model.embedded import cache_root

    return cache_root() / "axbench"


def answers_with_seeds(engine, prompts: Sequence[str], seeds: Sequence[int], max_new_tokens: int, plan=None,
                       system_prompt: str | None = None, batch_size: int = 16) -> list[list[int]]:
    """`evaluate.generate_answers` with an explicit sampling seed per prompt (there: `seed * 1000 + i`)."""
    settings = engine.config.generation
    eos = set(engine.eos_ids())
    out: list[list[int]] = []
    for b in range(0, len(prompts), batch_size):
        requests = [engine.request([{"role": "user", "content": p}], plan,
                                   replace(settings, max_new_tokens=max_new_tokens, seed=s), system_prompt)
                    for p, s in zip(prompts[b : b + batch_size], seeds[b : b + batch_size])]
        engine.run_now(requests)
        for r in requests:
            if r.error is not None:
                raise r.error
            ids = list(r.tokens)
            out.append(ids[: next((k for k, t in enumerate(ids) if t in eos), len(ids))])
    return out


def unsteered_answers(engine, prompts: Sequence[str], seed: int, max_new_tokens: int, system_prompt: str | None = None,
                      cache: bool = True) -> list[list[int]]:
    """Unsteered answers as `evaluate.generate_answers` samples them (seed `seed * 1000 + i` for prompt i), kept
    on disk under `cache_dir()` per (prompt, seed), in a file per model, sampling settings, length and system prompt."""
    seeds = [seed * 1000 + i for i in range(len(prompts))]
    if not cache:
        return answers_with_seeds(engine, prompts, seeds, max_new_tokens, system_prompt=system_prompt)
    settings = replace(engine.config.generation, max_new_tokens=max_new_tokens, seed=None)
    key = json.dumps({"model": str(engine.config.model), "settings": asdict(settings), "system": system_prompt},
                     sort_keys=True)
    path = cache_dir() / f"answers-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    stored = json.loads(path.read_text())["answers"] if path.exists() else {}
    names = [f"{s}|{p}" for p, s in zip(prompts, seeds)]
    missing = [i for i, n in enumerate(names) if n not in stored]
    if missing:
        new = answers_with_seeds(engine, [prompts[i] for i in missing], [seeds[i] for i in missing], max_new_tokens,
                                 system_prompt=system_prompt)
        stored.update({names[i]: a for i, a in zip(missing, new)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": json.loads(key), "answers": stored}))
        tmp.replace(path)
    return [stored[n] for n in names]
