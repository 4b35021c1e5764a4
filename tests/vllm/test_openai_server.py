"""The OpenAI-compatible server on the vLLM engine, driven by the official `openai` client."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import openai
import pytest

from tests.helpers import free_port
from tests.vllm.test_vllm_backend import PROMPT, answer, steer


@pytest.fixture(scope="module")
def server(vllm_engine):
    import uvicorn

    from steering.serving.openai_api import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(vllm_engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="none")


STEERING = {"features": [{"key": "L15:8672", "strength": 40, "mode": "clamp"}]}


def test_the_openai_client_streams_a_steered_answer(client, vllm_engine, greedy):
    expected = vllm_engine.tokenizer.decode(answer(vllm_engine, steer(vllm_engine, {"L15:8672": 40}, "clamp"), greedy).tokens,
                                            skip_special_tokens=True)
    chunks = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": PROMPT}], stream=True, temperature=0, max_tokens=32,
        extra_body={"steering": STEERING, "repetition_penalty": 1.0})
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert len([p for p in pieces if p]) > 5 and "".join(pieces) == expected
    whole = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": PROMPT}], temperature=0, max_tokens=32,
        extra_body={"steering": STEERING, "repetition_penalty": 1.0})
    assert whole.choices[0].message.content == expected and whole.choices[0].finish_reason == "length"


def test_no_features_or_null_is_unsteered_and_absent_is_the_config_default(client, server, vllm_engine, greedy):
    plain = vllm_engine.tokenizer.decode(answer(vllm_engine, None, greedy).tokens, skip_special_tokens=True)
    default = vllm_engine.tokenizer.decode(answer(vllm_engine, vllm_engine.plan(), greedy).tokens, skip_special_tokens=True)
    assert plain != default
    got = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}], temperature=0,
                                         max_tokens=32, extra_body={"steering": {"features": []}, "repetition_penalty": 1.0})
    assert got.choices[0].message.content == plain
    body = {"messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": 32, "repetition_penalty": 1.0}
    null = httpx.post(server + "/v1/chat/completions", json=body | {"steering": None}, timeout=600).json()
    absent = httpx.post(server + "/v1/chat/completions", json=body, timeout=600).json()
    assert null["choices"][0]["message"]["content"] == plain
    assert absent["choices"][0]["message"]["content"] == default


BAD = [
    ({"features": [{"key": "L15:99999999", "strength": 4}]}, "steering.features[0].key"),
    ({"features": [{"key": "15:3", "strength": 4}]}, "steering.features[0].key"),
    ({"features": [{"key": "L15:3", "strength": "big"}]}, "steering.features[0].strength"),
    ({"features": [{"key": "L99:3", "strength": 4}]}, "steering.features[0].key: layer 99 is outside"),
    ({"features": [{"key": "L15:3", "strength": 4, "mode": "boost"}]}, "steering.features[0].mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap"),
    ({"features": [{"key": f"L15:{i}", "strength": 1} for i in range(40)]}, "at most 32"),
    ({"features": [], "strenght": 3}, "steering.strenght: not a steering field"),
]


@pytest.mark.parametrize("steering,says", BAD)
def test_bad_steering_gets_a_400_that_names_the_field(client, server, steering, says):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       extra_body={"steering": steering})
    message = err.value.body["message"]
    assert says in message and "Traceback" not in message and "/root" not in message and "/work" not in message
    assert httpx.get(server + "/health").json()["status"] == "ok"


def test_non_finite_strength_is_refused(server):
    body = '{"messages": [{"role": "user", "content": "Hi"}], "steering": {"features": [{"key": "L15:3", "strength": NaN}]}}'
    r = httpx.post(server + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "steering.features[0].strength must be a finite number" in r.json()["error"]["message"]


def test_a_client_that_goes_away_aborts_the_engine_request(server, vllm_engine, configs):
    llm = vllm_engine.backend.engine.llm
    body = {"messages": [{"role": "user", "content": PROMPT}], "stream": True, "max_tokens": 400, "temperature": 0,
            "steering": STEERING}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=600) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any("content" in line for line in got)
    deadline = time.time() + 120
    while (llm.output_processor.get_num_unfinished_requests() or vllm_engine.active_requests) and time.time() < deadline:
        time.sleep(0.05)
    assert llm.output_processor.get_num_unfinished_requests() == 0 and vllm_engine.active_requests == 0
    assert vllm_engine.chat("Say hi.", settings=replace(configs[0].generation, max_new_tokens=4))
