"""`VLLMEngine`: vLLM's `AsyncLLM` on a thread of its own, serving the project's `Request`s.

One owner for the engine, its event loop and its thread; `close()` shuts all three down. The
decoder side (`VLLMDecoder.run`) keeps `Decoder.run`'s contract, so the `Engine`, the app, the
console and the evaluation work unchanged: each row streams its tokens through its own `RowText`,
Stop aborts the engine request at once, and every row ends whatever happens. A steered request
sends its plan to our worker extension (`worker`) and carries a cache salt derived from the
plan, so prefix-cache blocks are shared only between requests steered the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future

import torch

from steering.backends.payload import to_payload
from steering.generate.decode import InFlight, Request

EXTENSION = "steering.backends.vllm.worker.SteeringWorkerExtension"  # imported by vLLM's worker, not here

STOP_POLL_S = 0.005


def plan_fingerprint(payload: dict | None) -> str | None:
    """A cache salt for a steered request: equal plans share prefix-cache blocks, other requests never do."""
    if payload is None:
        return None
    return "steer-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


MEMORY_FIX = ("Fix: lower vllm.max_model_len or vllm.max_num_seqs, raise vllm.kv_cache_gib (CPU), split the model over "
              "more GPUs (vllm.tensor_parallel_size), or pick a smaller model.")
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "F32": 4, "F16": 2, "BF16": 2}


def start_failure(model_path: str, err: BaseException) -> str:
    """Why vLLM did not start. Its engine process logs the root cause (often memory) and the caller only
    sees "initialization failed", so the message points there and names the fields that fix memory."""
    text = " ".join(str(err).split())
    if len(text) > 500:
        text = text[:500] + "..."
    return f"vLLM could not start {model_path}: {type(err).__name__}: {text} If the log above blames memory: {MEMORY_FIX}"


def weight_bytes(model_path: str, dtype: str) -> int:
    """The model's weights in memory at `dtype`, from its safetensors headers (nothing is loaded)."""
    import json
    import struct
    from pathlib import Path

    total = 0
    for f in Path(model_path).glob("*.safetensors"):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for name, t in header.items():
            if name != "__metadata__":
                n = 1
                for d in t["shape"]:
                    n *= d
                total += n * _BYTES.get(dtype, _BYTES.get(t["dtype"], 4))
    return total


def check_fits(model_path: str, dtype: str, tensor_parallel_size: int, kv_cache_gib: int | None,
               available: int | None = None) -> None:
    """Refuse before starting vLLM when the weights (per GPU or on this host) and the CPU KV cache cannot fit:
    vLLM would otherwise fail in its engine process after a long load, or the host would swap."""
    import torch

    need = weight_bytes(model_path, dtype) // max(1, tensor_parallel_size)
    on_gpu = available is None and torch.cuda.is_available()
    if on_gpu:
        available, where = torch.cuda.mem_get_info()[0], "on each GPU"  # vLLM sizes the GPU KV cache itself
    else:
        if available is None:
            import psutil

            available = psutil.virtual_memory().available
        where = "in this host's free memory"
        need += int((kv_cache_gib or 4) * 2**30)  # the CPU KV cache is allocated up front (vLLM's default: 4 GiB)
    if need > available:
        raise RuntimeError(f"{model_path} does not fit {where}: it needs about {need / 2**30:.1f} GiB "
                           f"(weights at {dtype} and the KV cache), {available / 2**30:.1f} GiB is free. {MEMORY_FIX}")


class VLLMEngine:
    """Starts `AsyncLLM` for `model_path` with our worker extension; `submit` runs a coroutine on its loop."""

    def __init__(self, model_path: str, *, dtype: str = "float32", max_model_len: int = 2048,
                 tensor_parallel_size: int = 1, enable_prefix_caching: bool = True, kv_cache_gib: int | None = None,
                 seed: int = 0, max_num_seqs: int = 16):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        check_fits(model_path, dtype, tensor_parallel_size, kv_cache_gib)
        if kv_cache_gib is not None:  # read by the engine process vLLM starts below (CPU hosts)
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
        args = AsyncEngineArgs(model=model_path, dtype=dtype, max_model_len=max_model_len, enforce_eager=True,
                               tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=enable_prefix_caching,
                               worker_extension_cls=EXTENSION, seed=seed, max_num_seqs=max_num_seqs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        self.llm = None
        try:
            self.llm = self.submit(self._build(AsyncLLM, args)).result()
        except Exception as err:
            self.close()
            raise RuntimeError(start_failure(model_path, err)) from None

    @staticmethod
    async def _build(async_llm, args):
        return async_llm.from_engine_args(args)

    def submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def rpc(self, method: str, *args):
        """Call our worker extension's `method` on every worker; returns rank 0's answer."""
        out = self.submit(self.llm.collective_rpc(method, args=args)).result()
        return out[0] if isinstance(out, (list, tuple)) else out

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.shutdown()
            self.llm = None
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


class VLLMDecoder:
    """`Decoder.run`'s contract on vLLM: all rows run concurrently; vLLM batches them with everyone else's."""

    per_row = True

    def __init__(self, engine: VLLMEngine, tokenizer, eos_ids: Iterable[int], special_ids: Iterable[int],
                 sae_source: Callable[[int], dict] | None = None, stop_text: str | None = None):
        self.engine, self.tokenizer = engine, tokenizer
        self.eos_ids, self.special_ids = sorted(set(eos_ids)), sorted(set(special_ids))
        self.sae_source, self.stop_text = sae_source, stop_text
        self.in_flight = InFlight()

    @property
    def active(self) -> int:
        return self.in_flight.count

    def run(self, rows: Sequence[Request]) -> None:
        live = self.in_flight.take(rows)
        for r in live:
            r.start(self.tokenizer)
        futures = [(r, self.engine.submit(self._one(r))) for r in live]
        for r, fut in futures:
            try:
                fut.result()
            except BaseException as exc:  # surfaced to the row's consumer
                r.error = exc
            finally:
                r.finish()

    def sampling(self, r: Request):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = r.settings
        greedy = s.temperature <= 0
        return SamplingParams(
            temperature=0.0 if greedy else s.temperature, top_p=1.0 if greedy else s.top_p,
            repetition_penalty=s.repetition_penalty, seed=None if greedy else s.seed, max_tokens=s.max_new_tokens,
            stop_token_ids=self.eos_ids, stop=[self.stop_text] if self.stop_text else None,
            output_kind=RequestOutputKind.DELTA, detokenize=False, skip_special_tokens=True,
            logprobs=0 if r.record_logits else None)

    async def _one(self, r: Request) -> None:
        llm = self.engine.llm
        ids = [int(t) for t in r.input_ids[0].tolist()]
        payload = to_payload(r.plan, self.sae_source) if r.plan is not None and not r.plan.is_empty else None
        rid = f"steer-{uuid.uuid4().hex}"
        prompt: dict = {"prompt_token_ids": ids}
        if payload is not None:
            prompt["cache_salt"] = plan_fingerprint(payload)
            await llm.collective_rpc("register_plan", args=(rid, payload, ids, self.special_ids))
        watcher = asyncio.create_task(self._abort_on_stop(r, rid))
        finished = False
        try:
            async for out in llm.generate(prompt, self.sampling(r), rid):
                if r.stop_event.is_set():
                    break
                for token in out.outputs[0].token_ids:
                    r.tokens.append(int(token))
                    r.text.put(torch.tensor([int(token)]))
                finished = out.finished
                r.cached_tokens = max(r.cached_tokens, int(getattr(out, "num_cached_tokens", 0) or 0))
        finally:
            watcher.cancel()
            if not finished:
                await llm.abort(rid)
            if payload is not None:
                await asyncio.shield(llm.collective_rpc("unregister_plan", args=(rid,)))

    async def _abort_on_stop(self, r: Request, rid: str) -> None:
        """Stop is a thread's flag; abort the engine request as soon as it is set."""
        while not r.stop_event.is_set():
            await asyncio.sleep(STOP_POLL_S)
        await self.engine.llm.abort(rid)


def vllm_decoder(engine, batching: bool) -> VLLMDecoder:
    """The decoder of an `Engine` whose model is a `VLLMModel`."""
    from steering.model.chat_template import PLAIN_TURN_STOP

    if batching:
        engine.log("batching is vLLM's own on backend: vllm (the engine's batch window is not used)")
    stop_text = None if getattr(engine.tokenizer, "chat_template", None) else PLAIN_TURN_STOP
    return VLLMDecoder(engine.model.engine, engine.tokenizer, engine.eos_ids(), engine.special_ids,
                       engine.model.sae_source, stop_text=stop_text)
