"""API keys on the steering server: every route but /health needs `Authorization: Bearer <key>`, compared in
constant time, and the key shows in no answer. The app is `create_app`'s own, over a stand-in engine (no model)."""

from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from steering.serving.auth import authorized, bearer, key_from_env, require_key
from steering.serving.openai_api import create_app

KEY = "k-3f9a1c-secret"


def engine_stand_in():
    return SimpleNamespace(config=SimpleNamespace(model="smollm2", vllm=None), backend=SimpleNamespace(name="hooks"), active_requests=0,
                           n_layers=30)


@pytest.fixture
def client():
    with TestClient(create_app(engine_stand_in(), api_key=KEY)) as c:
        yield c


ROUTES = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/steering/generate"),
          ("POST", "/v1/steering/residuals"), ("POST", "/v1/steering/output_scores"), ("GET", "/v1/steering/info"),
          ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer zzq-sent", f"Basic {KEY}", KEY, f"Bearer {KEY}x", "Bearer "])
def test_every_route_but_health_refuses_a_request_without_the_key(client, method, path, header):
    r = client.request(method, path, headers={"Authorization": header} if header else {}, json={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and "Authorization: Bearer" in error["message"]
    assert KEY not in r.text and "zzq" not in r.text


def test_the_key_opens_every_route_and_health_needs_none(client):
    assert client.get("/health").status_code == 200
    assert client.get("/v1/models", headers=bearer(KEY)).json()["data"][0]["id"] == "smollm2"
    assert client.get("/v1/steering/info", headers={"authorization": f"bearer  {KEY} "}).status_code == 200
    bad = client.post("/v1/chat/completions", headers=bearer(KEY), content=b"not json")
    assert bad.status_code == 400  # past the key check, to the route's own validation


def test_without_a_key_nothing_is_asked():
    with TestClient(create_app(engine_stand_in())) as c:
        assert c.get("/v1/models").status_code == 200


def test_an_empty_key_is_refused_at_start():
    from fastapi import FastAPI

    with pytest.raises(ValueError, match="empty API key"):
        require_key(FastAPI(), "")


def test_the_comparison_is_hmac_compare_digest_over_digests(monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    assert authorized(f"Bearer {KEY}", KEY) and not authorized("Bearer other", KEY) and not authorized(None, KEY)
    digest = hashlib.sha256(KEY.encode()).digest()
    assert compared[0] == (digest, digest) and all(len(a) == len(b) == 32 for a, b in compared)


def test_the_environment_variable(monkeypatch):
    monkeypatch.setenv("STEERING_API_KEY", "")
    assert key_from_env() is None and bearer(None) == {}
    monkeypatch.setenv("STEERING_API_KEY", KEY)
    assert key_from_env() == KEY and bearer(KEY) == {"Authorization": f"Bearer {KEY}"}
