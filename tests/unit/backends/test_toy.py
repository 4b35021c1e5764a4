"""tests/toy_backend.py, a backend added in one module and one registry line, on the tiny random Llama: the
engine and the service work through it alone, and its answers and reads equal the hooks backend's."""

from __future__ import annotations

import queue
from dataclasses import replace

import torch

from steering.backends import registry
from steering.engine import Engine
from steering.steer.plan import SteeringPlan
from tests.unit.conftest import TINY_FEATURE

ASK = "tell me about the sea"


def test_the_toy_backend_answers_and_reads_as_the_hooks_backend(monkeypatch, tiny_engine):
    monkeypatch.setitem(registry.BACKENDS, "toy", "tests.toy_backend:ToyBackend")  # what its module's last line does
    config, backend = replace(tiny_engine.config, backend="toy"), tiny_engine.backend
    with Engine.for_model(config, backend.model, backend.tokenizer, tiny_engine.vectors, log=lambda m: None) as toy:
        assert type(toy.backend).__name__ == "ToyBackend" and toy.backend.name == "toy"
        plan = toy.plan({"L{}:{}".format(*TINY_FEATURE): 9.0})
        for p in (SteeringPlan(), plan):
            assert toy.chat(ASK, plan=p) == tiny_engine.chat(ASK, plan=p)
        events = queue.SimpleQueue()
        pair = [toy.request(ASK, plan, events=events, tag=0), toy.request(ASK, SteeringPlan(), events=events, tag=1)]
        texts = ["", ""]
        for i, piece in toy.stream_many(pair):  # compare mode: one group, run one request at a time
            texts[i] += piece
        assert texts == [tiny_engine.chat(ASK, plan=plan), tiny_engine.chat(ASK, plan=SteeringPlan())]
        ids = [[1, 5, 6, 7], [1, 8]]
        for got, expected in zip(toy.backend.read_residuals(ids, 2, plan), backend.read_residuals(ids, 2, plan)):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        assert toy.active_requests == 0
    assert tiny_engine.chat(ASK) == tiny_engine.chat(ASK)  # closing the toy left the hooks engine working
