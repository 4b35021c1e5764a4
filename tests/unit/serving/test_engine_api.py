"""steering.serving.engine_api through FastAPI's test client on the tiny engine: each route answers what the
engine's backend answers in process (token ids, residuals, output scores), steered by the plan payload it is sent."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from steering.backends.payload import to_payload
from steering.serving.engine_api import router
from steering.service.admission import Admission
from steering.serving.wire import decode_tensor, encode_tensor
from tests.unit.conftest import TINY_FEATURE

IDS = [1, 5, 6, 7, 8]


@pytest.fixture
def client(tiny_engine):
    app = FastAPI()
    app.include_router(router(tiny_engine, Admission(8)))
    with TestClient(app) as c:
        yield c


def _plan(engine, strength=6.0):
    layer, index = TINY_FEATURE
    return engine.plan({f"L{layer}:{index}": strength})


def _events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_generate_streams_the_engines_own_tokens_under_the_plan(client, tiny_engine):
    settings = tiny_engine.config.generation
    for plan in (None, _plan(tiny_engine)):
        local = tiny_engine.request("unused", plan, settings)
        local = type(local)(type(local.spec)(torch.tensor([IDS]), plan, settings), local.events)
        tiny_engine.run_now([local])
        body = {"prompt_token_ids": IDS, "steering": None if plan is None else to_payload(plan),
                "settings": settings.to_dict()}
        events = _events(client.post("/v1/steering/generate", json=body))
        assert [t for e in events for t in e.get("token_ids", [])] == local.tokens
        assert events[-1] == {"finished": True, "cached_tokens": 0}
    info = client.get("/v1/steering/info").json()
    assert info == {"model": "tiny", "n_layers": 4, "backend": "hooks", "served": {"generate": 2}, "generating": 0}


def test_residuals_and_output_scores_equal_the_backends(client, tiny_engine):
    backend, plan = tiny_engine.backend, _plan(tiny_engine)
    got = client.post("/v1/steering/residuals", json={"prompts": [IDS, IDS[:2]], "layer": 2,
                                                      "steering": to_payload(plan)}).json()["residuals"]
    for row, expected in zip(got, backend.read_residuals([IDS, IDS[:2]], 2, plan)):
        torch.testing.assert_close(decode_tensor(row), expected)
    units = torch.nn.functional.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(1)), dim=1)
    prompts, tokens = [torch.tensor(IDS), torch.tensor(IDS[:3])], torch.tensor([10, 11, 12])
    scores = client.post("/v1/steering/output_scores", json={
        "layer": 1, "directions": encode_tensor(units), "prompts": [p.tolist() for p in prompts],
        "strength": 4.0, "tokens": tokens.tolist()}).json()
    score, base = backend.output_scores(1, units, prompts, 4.0, tokens)
    assert scores["score"] == pytest.approx(score.tolist(), abs=1e-7)
    assert scores["base"] == pytest.approx(base.tolist(), abs=1e-7)
