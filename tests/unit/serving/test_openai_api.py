"""steering.serving.openai_api through FastAPI's test client on the tiny engine: a chat completion (whole and
streamed) is the engine's own answer under the request's steering, and bad input is a 400 naming the field."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from steering.serving.openai_api import create_app
from tests.unit.conftest import TINY_FEATURE

ASK = [{"role": "user", "content": "tell me about the sea"}]
KEY = "L{}:{}".format(*TINY_FEATURE)


@pytest.fixture
def client(tiny_engine):
    with TestClient(create_app(tiny_engine)) as c:
        yield c


def test_health_and_models(client):
    assert client.get("/health").json() == {"status": "ok", "generating": 0}
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"


def test_a_completion_is_the_engines_answer_under_the_requests_steering(client, tiny_engine):
    settings = tiny_engine.config.generation
    steering = {"features": [{"key": KEY, "strength": 9.0}]}
    steered = tiny_engine.chat(ASK, settings=settings, plan=tiny_engine.plan({KEY: 9.0}))
    plain = tiny_engine.chat(ASK, settings=settings, strengths={KEY: None})
    assert steered != plain  # the steering matters on this model
    got = client.post("/v1/chat/completions", json={"messages": ASK, "steering": steering}).json()
    assert got["object"] == "chat.completion" and got["choices"][0]["message"]["content"] == steered
    assert got["choices"][0]["finish_reason"] == "length"  # 8 tokens, the config's length
    got = client.post("/v1/chat/completions", json={"messages": ASK, "steering": None}).json()
    assert got["choices"][0]["message"]["content"] == plain


def test_streaming_sends_the_same_text_in_chunks_then_done(client, tiny_engine):
    whole = client.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 6}).json()
    lines = client.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 6, "stream": True}).text.splitlines()
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d)["choices"][0] for d in data[:-1]]
    assert chunks[0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["delta"].get("content", "") for c in chunks) == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["finish_reason"] == "length" and len(chunks) >= 3


@pytest.mark.parametrize("body, param, says", [
    ("{not json", None, "the request body is not JSON"),
    ({"messages": ASK, "temperature": 3}, "temperature", "temperature"),
    ({"messages": ASK, "steering": {"features": [{"key": "L9:3", "strength": 1}]}}, "steering.features[0].key",
     "layer 9 is outside this model (0..3)"),
    ({"messages": ASK, "logprobs": True}, "logprobs", "not read by this server"),
])
def test_bad_input_is_a_400_naming_the_field(client, body, param, says):
    raw = body if isinstance(body, str) else json.dumps(body)
    r = client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and says in error["message"] and error["param"] == param
    assert "Traceback" not in error["message"]
