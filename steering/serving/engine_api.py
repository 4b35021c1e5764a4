"""The engine's own operations over HTTP, for an app that uses remote steering servers (`backend: remote`):
generate from token ids under a plan, read residuals, score directions. Mounted by `openai_api.create_app`
beside the OpenAI routes; `steering.backends.remote` is the client side.

    POST /v1/steering/generate     {"prompt_token_ids", "steering": plan payload | null, "settings"} -> SSE of
                                   {"token_ids", "text"} ... {"finished": true, "cached_tokens"}
    POST /v1/steering/residuals    {"prompts": [[ids]], "layer", "steering"} -> {"residuals": [{"shape", "data"}]}
    POST /v1/steering/output_scores {"layer", "directions", "prompts", "strength", "tokens"} -> {"score", "base"}
    GET  /v1/steering/info         the model, its layer count and the requests served so far
Tensors travel as base64 float32 (little-endian) with their shape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from steering.config import GenerationSettings
from steering.generate.decode import Request as EngineRequest
from steering.backends.payload import from_payload
from steering.serving.wire import decode_tensor, encode_tensor


def router(engine) -> APIRouter:
    api = APIRouter(prefix="/v1/steering")
    served = {"generate": 0}

    def plan_of(body: dict):
        payload = body.get("steering")
        return None if payload is None else from_payload(payload, lambda src: engine.sae(int(src["layer"])))

    @api.get("/info")
    async def info():
        return {"model": engine.config.model, "n_layers": engine.n_layers, "backend": engine.backend,
                "served": dict(served), "generating": engine.active_requests}

    @api.post("/generate")
    async def generate(request: Request):
        body = json.loads(await request.body())
        settings = GenerationSettings(**body["settings"])
        plan = plan_of(body)
        ids = torch.tensor([body["prompt_token_ids"]], dtype=torch.long)
        served["generate"] += 1
        return StreamingResponse(_tokens(engine, ids, plan, settings, request), media_type="text/event-stream")

    @api.post("/residuals")
    async def residuals(request: Request):
        body = json.loads(await request.body())

        def read():
            with engine._steered(plan_of(body)):
                from steering.inspection.capture import read_ids

                return read_ids(engine.model, [list(map(int, p)) for p in body["prompts"]], int(body["layer"]))

        rows = await asyncio.to_thread(read)
        return JSONResponse({"residuals": [encode_tensor(r) for r in rows]})

    @api.post("/output_scores")
    async def output_scores(request: Request):
        from steering.inspection.output_score import output_scores as scores

        body = json.loads(await request.body())
        prompts = [torch.tensor(p, dtype=torch.long) for p in body["prompts"]]
        got = await asyncio.to_thread(scores, engine.model, int(body["layer"]), decode_tensor(body["directions"]),
                                      prompts, float(body["strength"]), torch.tensor(body["tokens"], dtype=torch.long))
        return JSONResponse({"score": got.score.tolist(), "base": got.base.tolist()})

    return api


async def _tokens(engine, ids, plan, settings, request) -> Any:
    import queue

    r = EngineRequest(ids, plan, settings, queue.SimpleQueue())
    r.text = _Sink(r)  # no local detokenizer: the client has its own
    thread = asyncio.get_running_loop().run_in_executor(None, engine.decoder.run, [r])
    sent = 0
    try:
        while not (r.finished.is_set() and sent == len(r.tokens)):
            if await request.is_disconnected():
                return
            if len(r.tokens) > sent:
                new = r.tokens[sent:]
                sent += len(new)
                yield "data: " + json.dumps({"token_ids": new}) + "\n\n"
            else:
                await asyncio.sleep(0.005)
        if r.error is not None:
            yield "data: " + json.dumps({"error": str(r.error)}) + "\n\n"
        yield "data: " + json.dumps({"finished": True, "cached_tokens": r.cached_tokens}) + "\n\n"
    finally:
        r.stop_event.set()
        await thread


class _Sink:
    """Stands in for `RowText`: the server streams token ids, not text."""

    def __init__(self, r):
        self.r = r

    def put(self, _token) -> None:
        pass

    def end(self) -> None:
        pass
