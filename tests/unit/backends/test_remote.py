"""steering.backends.remote against a real steering server in this process (uvicorn serving the engine API of
the tiny engine): answers, residuals and output scores equal the server's engine's, steered alike; Stop ends
the answer on the server; a chat stays on one server."""

from __future__ import annotations

import threading
import time

import pytest
import torch
import uvicorn

from steering.backends.remote import RemoteBackend
from steering.config import DemoConfig
from steering.engine import Engine
from steering.generate.decode import Request, RequestSpec
from steering.serving.openai_api import create_app
from steering.steer.vectors import VectorSet
from tests.helpers import free_port
from tests.unit.conftest import TINY_FEATURE

IDS = [1, 5, 6, 7, 8]


@pytest.fixture
def server(tiny_engine):
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(tiny_engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.05):  # uvicorn sets `started` once it listens
        assert thread.is_alive(), "the server did not start"
        if srv.started:
            started.set()
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(30)


@pytest.fixture
def remote(tiny_engine, server, tmp_path):
    """A remote engine on the tiny model's files (config and tokenizer only: the weights stay on the server)."""
    backend = tiny_engine.backend
    backend.model.config.save_pretrained(tmp_path)
    backend.model.generation_config.save_pretrained(tmp_path)
    backend.tokenizer.save_pretrained(tmp_path)
    with Engine(DemoConfig(model="tiny", generation=tiny_engine.config.generation),
                RemoteBackend(str(tmp_path), [server], log=lambda m: None), VectorSet("tiny", {}),
                log=lambda m: None) as engine:
        yield engine


def _plan(engine):
    layer, index = TINY_FEATURE
    return engine.plan({f"L{layer}:{index}": 6.0})


def test_answers_and_reads_equal_the_servers_engine(remote, tiny_engine):
    assert remote.model is None and remote.n_layers == 4 and remote.backend.name == "remote"
    plan = _plan(tiny_engine)
    for p in (None, plan):
        assert remote.chat("tell me about the sea", plan=p) == tiny_engine.chat("tell me about the sea", plan=p)
    for p in (None, plan):
        got, expected = remote.backend.read_residuals([IDS], 2, p), tiny_engine.backend.read_residuals([IDS], 2, p)
        torch.testing.assert_close(got[0], expected[0])
    units = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(2)), dim=1)
    prompts, tokens = [torch.tensor(IDS)], torch.tensor([10, 11])
    for got, expected in zip(remote.backend.output_scores(1, units, prompts, 4.0, tokens),
                             tiny_engine.backend.output_scores(1, units, prompts, 4.0, tokens)):
        torch.testing.assert_close(got, expected)


def test_stop_ends_the_answer_on_the_server(remote, tiny_engine):
    settings = tiny_engine.config.generation.__class__(max_new_tokens=100, temperature=0.0, repetition_penalty=1.0)
    stream = remote.stream("tell me about the sea", settings=settings)
    for i, _ in enumerate(stream):
        if i == 1:
            break  # closing the iterator is Stop
    row = stream.requests[0]
    assert row.finished.wait(60) and len(row.tokens) < 100
    deadline = time.monotonic() + 60  # the server ends the answer once its client has gone
    while tiny_engine.active_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert remote.active_requests == 0 and tiny_engine.active_requests == 0


def test_an_error_on_the_server_reaches_the_row(remote):
    row = Request(RequestSpec(torch.tensor([[1, 200]]), None, remote.config.generation))  # 200: outside the vocabulary
    remote.run_now([row])
    assert row.finished.is_set() and row.error is not None and "steering server" in str(row.error)


