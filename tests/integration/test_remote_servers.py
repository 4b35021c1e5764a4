"""`backend: remote`: an engine with no model of its own, served by three steering server processes
(`python -m steering.serve`, transformers backend here, with an API key), against the same config run locally."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch

from steering.config import FeatureSpec, load_config
from steering.engine import Engine
from steering.keys import FeatureKey
from tests.integration.servers import remote_engine

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Tell me about your weekend."


@pytest.fixture(scope="module")
def engines(server_pool):
    config = replace(load_config(ROOT / "demo.yaml"), device="cpu", dtype="float32")
    with Engine.from_config(config) as local, remote_engine(server_pool) as remote:
        yield local, remote


def steer(engine, strengths: dict, mode: str):
    keys = [FeatureKey.parse(k) for k in strengths]
    return engine.plan(dict(zip(map(str, keys), strengths.values())), mode,
                       features=[FeatureSpec(layer=k.layer, index=k.index) for k in keys])


def greedy(engine, tokens=24):
    return replace(engine.config.generation, temperature=0.0, max_new_tokens=tokens)


@pytest.mark.parametrize("strengths,mode", [({"L15:8672": 40}, "clamp"), ({"L15:8241": 30, "L15:15305": 20}, "add"),
                                            ({"L15:8672": 20}, "pin"), ({}, "add")])
def test_answers_equal_the_local_engine(engines, server_pool, strengths, mode):
    local, remote = engines
    assert (local.backend.name, remote.backend.name) == ("hooks", "remote")
    assert remote.model is None and remote.backend.servers == server_pool.urls  # no weights in this process
    plans = [steer(e, strengths, mode) for e in engines]
    got = [e.chat(PROMPT, settings=greedy(e), plan=p) for e, p in zip(engines, plans)]
    assert got[0] == got[1] and got[0]


def test_each_chat_stays_on_one_server_and_chats_spread(engines, server_pool):
    _, remote = engines
    before = len(remote.backend.decoder.routes)
    openings = [f"Question {i}: what is a good name for a {pet}?" for i, pet in enumerate(["cat", "dog", "fish", "horse", "bird", "goat"])]
    for text in openings:
        first = remote.chat(text, settings=greedy(remote, 6))
        remote.chat([{"role": "user", "content": text}, {"role": "assistant", "content": first},
                     {"role": "user", "content": "And another one?"}], settings=greedy(remote, 6))
    routes = list(remote.backend.decoder.routes)[before:]
    assert all(routes[i] == routes[i + 1] for i in range(0, len(routes), 2)), routes
    assert len(set(routes)) >= 2, "six chats should spread over the servers"
    served = [httpx.get(u + "/v1/steering/info", headers=server_pool.headers).json()["served"]["generate"]
              for u in set(routes)]
    assert all(n > 0 for n in served)


def test_the_inspector_reads_the_servers(engines):
    local, remote = engines
    message = "Tell me about dogs and their puppies."
    a, b = local.message_codes(message), remote.message_codes(message)
    assert a.tokens == b.tokens and torch.allclose(a.codes, b.codes, atol=1e-4)
    plan = steer(local, {"L15:8672": 40}, "clamp")
    assert torch.allclose(local.message_codes(message, plan=plan).codes, remote.message_codes(message, plan=plan).codes, atol=1e-4)
    from steering.inspection.concept_rank import concept_output_scores

    directions = local.sae(15).W_dec[[8672, 8241, 100]]
    ref = concept_output_scores(local.backend, 15, directions, "music", 60.0)
    got = concept_output_scores(remote.backend, 15, directions, "music", 60.0)
    assert torch.allclose(got.score, ref.score, atol=1e-6) and torch.allclose(got.base, ref.base, atol=1e-6)


def test_stop_ends_the_answer_on_its_server(engines, server_pool):
    _, remote = engines
    servers, key = server_pool.urls, server_pool.headers
    stream = remote.stream(PROMPT, settings=greedy(remote, 300))
    for i, _ in enumerate(stream):
        if i == 2:
            break
    deadline = time.time() + 20
    while any(httpx.get(u + "/v1/steering/info", headers=key).json()["generating"] for u in servers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(httpx.get(u + "/v1/steering/info", headers=key).json()["generating"] for u in servers)
    assert len(stream.requests[0].tokens) < 300 and remote.active_requests == 0


def test_the_app_runs_on_the_servers(server_pool, engines, tmp_path):
    """app.py, unchanged, with `backend: remote` and the servers' key in its environment: chat and the inspector
    through gradio_client; the key shows nowhere in its log."""
    import yaml
    from gradio_client import Client

    from tests.helpers import start_app, stop_app

    local, _ = engines
    data = local.config.to_dict() | {"backend": "remote", "servers": server_pool.urls, "vectors": str(local.config.vectors_path())}
    data["sae"]["source"] = local.config.sae_source()
    demo = tmp_path / "demo-remote.yaml"
    demo.write_text(yaml.safe_dump(data))
    servers, headers = server_pool.urls, server_pool.headers
    before = [httpx.get(u + "/v1/steering/info", headers=headers).json()["served"]["generate"] for u in servers]
    proc, url, log = start_app(demo, env={"STEERING_API_KEY": server_pool.key})
    try:
        client = Client(url, verbose=False)
        key = str(local.features[0].key)
        answer = client.predict(PROMPT, None, {key: local.features[0].strength}, "own", None, 16, 0.0, api_name="/chat")
        plan = local.plan({key: local.features[0].strength})
        assert answer.strip() == local.chat(PROMPT, settings=greedy(local, 16), plan=plan).strip()
        rows = client.predict("Tell me about dogs and their puppies.", 5, "message", 0.01, api_name="/inspect")
        assert [r["index"] for r in rows] == [r["index"] for r in local_inspect(local, "Tell me about dogs and their puppies.")]
    finally:
        stop_app(proc)
    after = [httpx.get(u + "/v1/steering/info", headers=headers).json()["served"]["generate"] for u in servers]
    assert sum(after) > sum(before), "the app's answer came from a server"
    assert "Traceback" not in log.read_text() and server_pool.key not in log.read_text()


def local_inspect(engine, message):
    from steering.inspection.feature_info import load_feature_info
    from steering.service.demo import DemoService
    from steering.service.limits import Limits

    service = DemoService(engine, Limits(), load_feature_info(engine.config))
    return service.inspect(message, n=5, view="message", max_density=0.01)
