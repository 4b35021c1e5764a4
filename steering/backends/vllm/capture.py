"""The inspector's reads from vLLM's own forward passes, not from a second copy of the model: residuals
captured by interp-engine's worker extension, and output scores from logprobs and ranks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import torch
from torch import Tensor

from steering.backends.payload import to_payload
from steering.backends.vllm.engine import VLLMEngine
from steering.steer.plan import Edit, SteeringPlan


async def capture(llm, ids: list[int], layer: int, payload: dict | None, special_ids: list[int]) -> Tensor:
    """resid_post of `layer` at every position of `ids`, (T, d) float32, from one engine request steered by
    `payload` (a private cache salt, so no position is served from the prefix cache)."""
    from interp_engine.vllm_capture._payload import decode_capture_payload
    from vllm import SamplingParams

    rid = f"capture-{uuid.uuid4().hex}"
    point = f"resid_post.{layer}"
    if payload is not None:
        await llm.collective_rpc("register_plan", args=(rid, payload, ids, special_ids))
    await llm.collective_rpc("register_capture", args=(rid, [point]))
    try:
        async for _ in llm.generate({"prompt_token_ids": ids, "cache_salt": rid},
                                    SamplingParams(max_tokens=1, temperature=0.0, detokenize=False), rid):
            pass
    finally:
        got = await asyncio.shield(llm.collective_rpc("collect_request", args=(rid,)))
        if payload is not None:
            await asyncio.shield(llm.collective_rpc("unregister_plan", args=(rid,)))
    captured = decode_capture_payload(got[0] if isinstance(got, (list, tuple)) else got)
    rows = next(iter(captured.values()))
    return rows[: len(ids)].float().cpu()


async def _next_token_logprobs(llm, ids: list[int], payload: dict | None, tokens: list[int]) -> dict:
    """{token: (logprob, rank)} for the next token after `ids`, `payload` (None: unsteered) steering only the
    last position: the worker is told the prompt ends one token early and the plan steers generated tokens."""
    from vllm import SamplingParams

    rid = f"score-{uuid.uuid4().hex}"
    prompt: dict = {"prompt_token_ids": ids}
    if payload is not None:
        prompt["cache_salt"] = rid
        await llm.collective_rpc("register_plan", args=(rid, payload, ids[:-1], []))
    final = None
    try:
        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, logprob_token_ids=tokens)
        async for out in llm.generate(prompt, params, rid):
            final = out
    finally:
        if payload is not None:
            await asyncio.shield(llm.collective_rpc("unregister_plan", args=(rid,)))
    step = final.outputs[0].logprobs[0]
    return {int(t): (float(lp.logprob), int(lp.rank)) for t, lp in step.items()}


def paper_scores(engine: VLLMEngine, vocab: int, layer: int, units: Tensor, prompts: Sequence[Tensor],
                 strength: float, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """`reads.paper_score` averaged over `prompts`, for each unit direction added at `layer` with
    `strength` at the prompt's last position (score) and unsteered (base), from vLLM's logprobs and ranks
    of `tokens` (k,): one prefill request per direction and prompt, all in flight together."""
    toks = [int(t) for t in tokens.reshape(-1).tolist()]
    ids = [[int(t) for t in p.reshape(-1).tolist()] for p in prompts]
    plans = [to_payload(SteeringPlan({layer: [Edit("add", u, float(strength))]}, generated_only=True)) for u in units]
    jobs = [engine.submit(_next_token_logprobs(engine.llm, p, payload, toks)) for payload in [None] + plans for p in ids]
    got = [j.result() for j in jobs]

    def score(found: dict) -> float:
        logprob, rank = max(found.values())  # the most probable of the tokens, and how many tokens beat it
        return (1 - (rank - 1) / vocab) * float(torch.tensor(logprob).exp())

    per = torch.tensor([score({t: v for t, v in g.items() if t in toks}) for g in got]).reshape(len(plans) + 1, len(ids))
    means = per.mean(dim=1)
    return means[1:], means[0].expand(len(plans)).clone()
