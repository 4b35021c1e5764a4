"""An OpenAI-compatible HTTP API over an `Engine` (any backend; vLLM for scale): `/v1/chat/completions`
(streamed or not, with an optional `steering` object, see `openai_request`), `/v1/models`, `/health`.

A client that goes away mid-answer, or a cancelled request, stops the answer (on vLLM: aborts the engine
request). Bad input gets 400 with `{"error": {"message", "type": "invalid_request_error", "param"}}`. With an API
key (`auth`), every route but `/health` needs it. At most `max_requests` answers are in progress at once (those
of the engine API included); past that a request gets 429 with `Retry-After` at once (`service.admission`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from steering.service.admission import Admission, Full, Place
from steering.service.limits import UserError
from steering.serving.auth import require_key
from steering.serving.engine_api import after_response, busy
from steering.serving.engine_api import router as engine_router
from steering.serving.openai_request import ChatRequest, parse

MAX_REQUESTS = 128
"""Answers in progress at once by default (`--max-requests`)."""


def create_app(engine, api_key: str | None = None, max_requests: int = MAX_REQUESTS):
    """The FastAPI app serving `engine` (which the caller owns and closes)."""
    app = FastAPI(title="steering: OpenAI-compatible steered chat")
    if api_key is not None:
        require_key(app, api_key)
    admission = Admission(max_requests, workers=max_requests)  # full, one of them ends every median / limit
    app.include_router(engine_router(engine, admission))  # what an app with backend: remote calls

    @app.get("/health")
    async def health():
        return {"status": "ok", "generating": engine.active_requests}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.config.model, "object": "model", "owned_by": "steering"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError as err:
            return _error(f"the request body is not JSON ({err}). Send a JSON object.", None)
        try:
            chat = await asyncio.to_thread(parse, body, engine)
        except UserError as err:
            return _error(str(err), str(err).split(" ", 1)[0].rstrip(":"))
        try:
            place = admission.enter()
        except Full as full:
            return busy(full)
        if chat.stream:  # the place is freed when the stream ends, or when its response does (a client gone early)
            return StreamingResponse(_released(_sse(engine, chat, request), place), media_type="text/event-stream",
                                     background=after_response(place.leave))
        pieces, finish = [], "stop"
        async for piece, finish in _released(_pieces(engine, chat, request), place):
            pieces.append(piece)
        return JSONResponse(_completion(chat, "".join(pieces), finish))

    return app


async def _released(pieces: AsyncIterator, place: Place) -> AsyncIterator:
    """`pieces`, then `place` freed, however the answer ends."""
    try:
        async for piece in pieces:
            yield piece
    finally:
        place.leave()


def _error(message: str, param: str | None):
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param}}, status_code=400)


async def _pieces(engine, chat: ChatRequest, request) -> AsyncIterator[tuple[str, str]]:
    """(text piece, finish reason so far); stops the answer when the client goes or the task is cancelled."""
    stream = engine.stream(chat.messages, settings=chat.settings, system_prompt=chat.system_prompt, plan=chat.plan)
    it = iter(stream)
    try:
        while True:
            piece = await asyncio.to_thread(next, it, None)
            if piece is None:
                break
            if await request.is_disconnected():
                return
            yield piece, "stop"
        r = stream.requests[0]
        if r.error is not None:
            raise r.error
        yield "", "length" if len(r.tokens) >= chat.settings.max_new_tokens else "stop"
    finally:
        stream.request_stop()
        await asyncio.to_thread(stream.stop, 10)


async def _sse(engine, chat: ChatRequest, request) -> AsyncIterator[str]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None) -> str:
        return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                      "model": chat.model,
                                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    async for piece, finish in _pieces(engine, chat, request):
        yield chunk({"content": piece}, None) if piece else chunk({}, finish)
    yield "data: [DONE]\n\n"


def _completion(chat: ChatRequest, text: str, finish: str) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": chat.model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": finish}]}
