"""The Gradio app, unchanged, on `backend: vllm`: chat, compare, Stop and the inspector through gradio_client."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client

from tests.helpers import free_port
from tests.vllm.test_vllm_backend import PROMPT

CHAT_REST = ("own", None, 24, 0.0, None, None, None)  # mode, add_features, max_new_tokens, temperature


@pytest.fixture(scope="module")
def client(app_demo):
    port = free_port()
    _, url, _ = app_demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield Client(url, verbose=False)
    app_demo.close()


def test_chat_streams_a_steered_answer_equal_to_the_engine_s(client, vllm_engine):
    key = str(vllm_engine.features[0].key)
    f = vllm_engine.features[0]
    answer = client.predict(PROMPT, None, {key: f.strength}, *CHAT_REST, api_name="/chat")
    plan = vllm_engine.plan({key: f.strength})
    settings = vllm_engine.config.generation.__class__(max_new_tokens=24, temperature=0.0, top_p=vllm_engine.config.generation.top_p,
                                                       repetition_penalty=vllm_engine.config.generation.repetition_penalty)
    expected = vllm_engine.chat(PROMPT, settings=settings, plan=plan)
    assert answer.strip() == expected.strip() and answer.strip()
    plain = client.predict(PROMPT, None, {key: None}, *CHAT_REST, api_name="/chat")
    assert plain.strip() != answer.strip()


def test_cancel_stops_the_engine_request(client, vllm_engine):
    llm = vllm_engine.backend.engine.llm
    job = client.submit(PROMPT, None, None, "own", None, 400, 0.0, api_name="/chat")
    deadline = time.time() + 300
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    deadline = time.time() + 120
    while (llm.output_processor.get_num_unfinished_requests() or vllm_engine.active_requests) and time.time() < deadline:
        time.sleep(0.05)
    assert llm.output_processor.get_num_unfinished_requests() == 0 and vllm_engine.active_requests == 0
    assert client.predict(api_name="/status")["active_generations"] == 0


def test_the_inspector_reads_the_engine(client):
    rows = client.predict("Tell me about dogs and their puppies.", 5, "message", 0.01, api_name="/inspect")
    assert len(rows) == 5 and all(r["activation"] > 0 for r in rows)
    labels = " ".join(str(r["label"]).lower() for r in rows)
    assert "dog" in labels or "pupp" in labels, labels


def test_compare_mode_gives_the_steered_and_the_plain_answer_side_by_side(app_service, vllm_engine):
    from dataclasses import replace

    service = app_service
    key = str(vllm_engine.features[0].key)
    setup = replace(service.setup_from_api({key: vllm_engine.features[0].strength}, "own", None, 24, 0.0, None, None, None), compare=True)
    last = None
    for last in service.chat(PROMPT, None, setup):
        pass
    alone = replace(setup, compare=False)
    steered_alone = list(service.chat(PROMPT, None, alone))[-1].steered
    plain_alone = list(service.chat(PROMPT, None, service.setup_from_api({key: None}, "own", None, 24, 0.0, None, None, None)))[-1].steered
    assert last.steered == steered_alone and last.unsteered == plain_alone and last.steered != last.unsteered
