"""How an answer set is scored: concept inclusion and fluency (perplexity under the unsteered model).

Fluency: the perplexity of the answers conditioned on the same chat prompt (without any system prompt
about the concept), over that of the unsteered answers; the text-only ratio reads the answers as plain
text (no prompt), which does not count leaving the prompt's topic as disfluency."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from steering.offline.eval.lexicons import Concept, mentions


@torch.inference_mode()
def answer_nll(model, tokenizer, prompts: Sequence[str], answers: Sequence[Sequence[int]], batch_size: int = 12) -> tuple[float, int]:
    """Summed NLL (nats) and token count of `answers` under the plain model, each after its chat prompt."""
    from steering.model.chat_template import encode_chat
    from steering.model.padding import padded

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    for b in range(0, len(prompts), batch_size):
        rows, spans = [], []
        for p, a in zip(prompts[b : b + batch_size], answers[b : b + batch_size]):
            prompt = encode_chat(tokenizer, [{"role": "user", "content": p}])[0]
            rows.append(torch.cat([prompt, torch.tensor(a, dtype=torch.long)]))
            spans.append((len(prompt), len(a)))
        ids, mask = padded(rows, pad)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        for i, (start, n) in enumerate(spans):
            if n == 0:
                continue
            tgt = ids[i, start : start + n]
            total -= float(logp[i, start - 1 : start + n - 1].gather(-1, tgt.unsqueeze(-1)).sum())
            count += n
    return total, count


@torch.inference_mode()
def text_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> tuple[float, int]:
    """Summed NLL and count of each text's tokens after its first, read as plain text with no prompt."""
    from steering.model.padding import padded

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"][0] for t in texts]
    rows = [r for r in rows if len(r) > 1]
    total, count = 0.0, 0
    for b in range(0, len(rows), batch_size):
        ids, mask = padded(rows[b : b + batch_size], pad)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        nll = -logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        valid = mask[:, 1:].bool()
        total += float(nll[valid].sum())
        count += int(valid.sum())
    return total, count


def add_text_only_fluency(result: dict, model, tokenizer) -> dict:
    """Add `text_fluency_ratio` to every run: perplexity of the answers as plain text (no prompt) under the
    unsteered model, over that of the unsteered answers. Unlike `fluency_ratio`, it does not count an answer
    that leaves the prompt's topic as disfluent."""
    def ppl(texts):
        nll, n = text_nll(model, tokenizer, texts)
        return math.exp(nll / max(n, 1))

    base = ppl(result["unsteered"]["answers"])
    result["unsteered"]["text_perplexity"] = base
    for e in result["features"]:
        for r in e["runs"] + [e["system_prompt"]]:
            r["text_fluency_ratio"] = ppl(r["answers"]) / base
    return result


def score(model, tokenizer, prompts, answers, concept: Concept, base_nll: tuple[float, int]) -> dict:
    texts = [tokenizer.decode(a, skip_special_tokens=True) for a in answers]
    nll, n = answer_nll(model, tokenizer, prompts, answers)
    ppl = math.exp(nll / max(n, 1))
    base_ppl = math.exp(base_nll[0] / max(base_nll[1], 1))
    return {"inclusion": sum(mentions(t, concept.words) for t in texts) / len(texts), "perplexity": ppl,
            "fluency_ratio": ppl / base_ppl, "mean_tokens": n / len(texts), "answers": texts}
