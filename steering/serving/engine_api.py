"""The engine's own operations over HTTP, for an app that uses remote steering servers (`backend: remote`):
generate from token ids under a plan, read residuals, score directions. Mounted by `openai_api.create_app`
beside the OpenAI routes; `steering.backends.remote` is the client side.

    POST /v1/steering/generate     {"prompt_token_ids", "steering": plan payload | null, "settings"} -> SSE of
                                   {"token_ids", "text"} ... {"finished": true, "cached_tokens"}
    POST /v1/steering/residuals    {"prompts": [[ids]], "layer", "steering"} -> {"residuals": [{"shape", "data"}]}
    POST /v1/steering/output_scores {"layer", "directions", "prompts", "strength", "tokens"} -> {"score", "base"}
    GET  /v1/steering/info         the model, its layer count and the requests served so far
Tensors travel as `wire` encodes them. A generation's stream carries a comment line
every `HEARTBEAT_S` while no token comes (queued, or a slow step), so a client tells a silent server from a busy
one; past the server's admission limit `/generate` answers 429 with `Retry-After`, before anything starts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import torch
from fastapi import APIRouter, Request
from fastapi.background import BackgroundTasks
from fastapi.responses import JSONResponse, StreamingResponse

from steering.config import GenerationSettings
from steering.backends.payload import from_payload
from steering.generate.decode import Request as EngineRequest
from steering.generate.decode import RequestSpec
from steering.service.admission import Admission, Full
from steering.serving.wire import decode_tensor, encode_tensor


HEARTBEAT_S = 5.0


def busy(full: Full) -> JSONResponse:
    """429, OpenAI's way, with `Retry-After` in seconds."""
    return JSONResponse({"error": {"message": str(full), "type": "rate_limit_error", "param": None, "code": "server_busy"}},
                        status_code=429, headers={"Retry-After": str(full.retry_after_s)})


def after_response(fn) -> BackgroundTasks:
    """`fn` run when a response has ended."""
    tasks = BackgroundTasks()
    tasks.add_task(fn)
    return tasks


def router(engine, admission: Admission) -> APIRouter:
    api = APIRouter(prefix="/v1/steering")
    served = {"generate": 0}

    def plan_of(body: dict):
        payload = body.get("steering")
        return None if payload is None else from_payload(payload, lambda src: engine.sae(int(src["layer"])))

    @api.get("/info")
    async def info():
        return {"model": engine.config.model, "n_layers": engine.n_layers, "backend": engine.backend.name,
                "served": dict(served), "generating": engine.active_requests}

    @api.post("/generate")
    async def generate(request: Request):
        body = json.loads(await request.body())
        settings = GenerationSettings(**body["settings"])
        plan = plan_of(body)
        ids = torch.tensor([body["prompt_token_ids"]], dtype=torch.long)
        try:
            place = admission.enter()
        except Full as full:
            return busy(full)
        served["generate"] += 1
        return StreamingResponse(_tokens(engine, ids, plan, settings, request, place.leave), media_type="text/event-stream",
                                 background=after_response(place.leave))  # freed also if the client left early

    @api.post("/residuals")
    async def residuals(request: Request):
        body = json.loads(await request.body())
        prompts = [list(map(int, p)) for p in body["prompts"]]
        rows = await asyncio.to_thread(engine.backend.read_residuals, prompts, int(body["layer"]), plan_of(body))
        return JSONResponse({"residuals": [encode_tensor(r) for r in rows]})

    @api.post("/output_scores")
    async def output_scores(request: Request):
        body = json.loads(await request.body())
        prompts = [torch.tensor(p, dtype=torch.long) for p in body["prompts"]]
        score, base = await asyncio.to_thread(engine.backend.output_scores, int(body["layer"]),
                                              decode_tensor(body["directions"]), prompts, float(body["strength"]),
                                              torch.tensor(body["tokens"], dtype=torch.long))
        return JSONResponse({"score": score.tolist(), "base": base.tolist()})

    return api


async def _tokens(engine, ids, plan, settings, request, done) -> Any:
    import queue

    r = EngineRequest(RequestSpec(ids, plan, settings), queue.SimpleQueue())
    r.text = _Sink(r)  # no local detokenizer: the client has its own
    thread = asyncio.get_running_loop().run_in_executor(None, engine.run_now, [r])
    sent, loop = 0, asyncio.get_running_loop()
    last = loop.time()
    try:
        while not (r.finished.is_set() and sent == len(r.tokens)):
            if await request.is_disconnected():
                return
            if len(r.tokens) > sent:
                new = r.tokens[sent:]
                sent += len(new)
                last = loop.time()
                yield "data: " + json.dumps({"token_ids": new}) + "\n\n"
            elif loop.time() - last >= HEARTBEAT_S:
                last = loop.time()
                yield ": waiting\n\n"
            else:
                await asyncio.sleep(0.005)
        if r.error is not None:
            yield "data: " + json.dumps({"error": str(r.error)}) + "\n\n"
        yield "data: " + json.dumps({"finished": True, "cached_tokens": r.cached_tokens}) + "\n\n"
    finally:
        r.stop_event.set()
        await thread
        done()


class _Sink:
    """Stands in for `RowText`: the server streams token ids, not text."""

    def __init__(self, r):
        self.r = r

    def put(self, _token) -> None:
        pass

    def end(self) -> None:
        pass
