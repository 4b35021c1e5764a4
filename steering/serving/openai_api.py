"""An OpenAI-compatible HTTP API over an `Engine` (any backend; vLLM for scale): `/v1/chat/completions`
(streamed or not, with an optional `steering` object, see `openai_request`), `/v1/models`, `/health`.

A client that goes away mid-answer, or a cancelled request, stops the answer (on vLLM: aborts the engine
request). Bad input gets 400 with `{"error": {"message", "type": "invalid_request_error", "param"}}`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from steering.service.limits import UserError
from steering.serving.engine_api import router as engine_router
from steering.serving.openai_request import ChatRequest, parse


def create_app(engine):
    """The FastAPI app serving `engine` (which the caller owns and closes)."""
    app = FastAPI(title="steering: OpenAI-compatible steered chat")
    app.include_router(engine_router(engine))  # what an app with backend: remote calls

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
        if chat.stream:
            return StreamingResponse(_sse(engine, chat, request), media_type="text/event-stream")
        pieces, finish = [], "stop"
        async for piece, finish in _pieces(engine, chat, request):
            pieces.append(piece)
        return JSONResponse(_completion(chat, "".join(pieces), finish))

    return app


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
