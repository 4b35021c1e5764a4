"""API keys for the steering server (`python -m steering.serve --api-key`, or `STEERING_API_KEY`).

With a key set, every route but `/health` (kept open for load balancers) answers 401 unless the request carries
`Authorization: Bearer <key>`, as OpenAI clients send it (`OpenAI(api_key=...)`); that covers the OpenAI routes,
the engine API that `backend: remote` calls and the API docs. `backend: remote` sends the key from the same
environment variable: a key never sits in a config file that a Space commits. Keys are compared in constant time
(`hmac.compare_digest`) and appear in no message or log line.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

API_KEY_ENV = "STEERING_API_KEY"
OPEN_PATHS = frozenset({"/health"})


def key_from_env() -> str | None:
    """The key in `STEERING_API_KEY`, or None when it is unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


def authorized(header: str | None, key: str) -> bool:
    """Whether an `Authorization` header carries `key` as a bearer token. The sha256 digests are compared, in
    constant time, so neither the token's content nor its length shows in the time taken."""
    scheme, _, token = (header or "").partition(" ")
    same = hmac.compare_digest(hashlib.sha256(token.strip().encode()).digest(), hashlib.sha256(key.encode()).digest())
    return same and scheme.lower() == "bearer"


def bearer(key: str | None) -> dict[str, str]:
    """The headers a client sends `key` with (none without a key)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def require_key(app: FastAPI, key: str) -> None:
    """Answer 401, OpenAI's way, to every request without `key`, except on `OPEN_PATHS`."""
    if not key:
        raise ValueError(f"an empty API key protects nothing: pass a key with --api-key or {API_KEY_ENV}, or neither")

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if request.url.path in OPEN_PATHS or authorized(request.headers.get("authorization"), key):
            return await call_next(request)
        sent = "a wrong API key" if request.headers.get("authorization") else "no API key"
        return JSONResponse(
            {"error": {"message": f"This server needs an API key and the request sent {sent}. Send the header "
                                  f"'Authorization: Bearer <key>' with the key the server was started with "
                                  f"(--api-key or {API_KEY_ENV}).",
                       "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
            status_code=401, headers={"WWW-Authenticate": "Bearer"})
