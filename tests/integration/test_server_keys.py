"""Keys on the real server processes (`python -m steering.serve` with STEERING_API_KEY): every route but /health
answers 401 without the key, the OpenAI route answers with it, `backend: remote` sends it from the environment, and
no server log holds it."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from steering.config import GenerationSettings, load_config
from steering.engine import Engine
from tests.integration.servers import remote_engine

ROUTES = [("GET", "/v1/models", None), ("GET", "/v1/steering/info", None),
          ("POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
          ("POST", "/v1/steering/generate", {"prompt_token_ids": [1, 2], "steering": None, "settings": {"max_new_tokens": 2}}),
          ("POST", "/v1/steering/residuals", {"prompts": [[1, 2]], "layer": 15, "steering": None}),
          ("POST", "/v1/steering/output_scores", {"layer": 15, "directions": {"shape": [0], "data": ""}, "prompts": [],
                                                   "strength": 1.0, "tokens": []})]


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_no_route_but_health_answers_without_the_key(server_pool, method, path, body):
    url = server_pool.urls[0]
    for headers in ({}, {"Authorization": "Bearer not-the-key"}, {"Authorization": server_pool.key}):
        r = httpx.request(method, url + path, json=body, headers=headers, timeout=30)
        assert r.status_code == 401, (path, headers, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key" and server_pool.key not in r.text
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"


def test_the_key_opens_the_openai_route(server_pool):
    """As OpenAI's client sends it: `Authorization: Bearer <key>`."""
    r = httpx.post(server_pool.urls[1] + "/v1/chat/completions", headers=server_pool.headers, timeout=120,
                   json={"model": "smollm2", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6,
                         "temperature": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].strip()


def test_backend_remote_sends_the_key_from_the_environment(server_pool, monkeypatch):
    short = GenerationSettings(max_new_tokens=4, temperature=0.0)
    with remote_engine(server_pool) as engine:
        assert engine.chat("Say hello.", settings=short)
    monkeypatch.delenv("STEERING_API_KEY", raising=False)
    config = replace(load_config(server_pool.config), backend="remote", servers=tuple(server_pool.urls))
    with Engine.from_config(config) as keyless:
        with pytest.raises(RuntimeError, match="refused the API key .* set STEERING_API_KEY"):
            keyless.chat("Say hello.", settings=short)


def test_no_server_log_holds_the_key(server_pool):
    for i in range(len(server_pool.urls)):
        httpx.get(server_pool.urls[i] + "/v1/models", headers={"Authorization": f"Bearer {server_pool.key}x"}, timeout=10)
        text = server_pool.log_path(i).read_text()
        assert text and server_pool.key not in text
