"""`routing.Ring` (rendezvous order, servers set aside and brought back) and the remote client's failover over
`httpx.MockTransport` servers: refused, closed before the first token, closed after it, busy, a router's 502."""

from __future__ import annotations

import json
import logging
from collections import Counter

import httpx
import pytest
import torch

from steering.config import GenerationSettings
from steering.backends.remote import RemoteBackend, RemoteDecoder
from steering.generate.decode import Request, RequestSpec
from steering.backends.routing import AnswerLost, Busy, NoServer, Ring, chat_id, ranked

SERVERS = ["http://a:1", "http://b:1", "http://c:1"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_key_keeps_its_order_and_chats_spread():
    firsts = Counter(ranked(SERVERS, f"chat {i}")[0] for i in range(300))
    assert set(firsts) == set(SERVERS) and min(firsts.values()) > 60, firsts
    assert ranked(SERVERS, "chat 7") == ranked(list(reversed(SERVERS)), "chat 7")


def test_a_dead_server_moves_only_its_own_chats():
    keys = [f"chat {i}" for i in range(200)]
    before = {k: ranked(SERVERS, k)[0] for k in keys}
    after = {k: ranked([s for s in SERVERS if s != "http://b:1"], k)[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "http://b:1" for k in moved)
    assert all(after[k] == ranked(SERVERS, k)[1] for k in moved)  # each to its own next server


def test_a_failed_server_is_left_out_until_a_health_check_brings_it_back(caplog):
    clock, checks, healthy = Clock(), [], {"http://b:1": False}
    ring = Ring(SERVERS, lambda s: checks.append(s) or healthy.get(s, True), down_s=10, clock=clock)
    key = next(f"k{i}" for i in range(100) if ranked(SERVERS, f"k{i}")[0] == "http://b:1")
    order = ranked(SERVERS, key)
    with caplog.at_level(logging.WARNING, "steering.remote"):
        ring.failed("http://b:1", httpx.ConnectError("[Errno 111] Connection refused"))
        ring.failed("http://b:1", httpx.ConnectError("[Errno 111] Connection refused"))
    assert list(ring.candidates(key)) == order[1:] + ["http://b:1"]  # set aside: last resort only
    assert checks == []
    clock.now = 10.5
    assert list(ring.candidates(key)) == order[1:]  # due: checked once, still down, left out
    assert checks == ["http://b:1"]
    assert list(ring.candidates(key)) == order[1:] + ["http://b:1"]  # the next check is one period later
    clock.now, healthy["http://b:1"] = 21.0, True
    assert list(ring.candidates(key)) == order and not ring.is_down("http://b:1")
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "stopped answering" in m]) == 1, lines  # one line per change of state
    assert any("answers again" in m for m in lines)
    assert all(r.exc_info is None for r in caplog.records)


def test_a_health_check_that_raises_counts_as_down():
    clock = Clock()
    ring = Ring(SERVERS[:2], lambda s: 1 / 0, down_s=1, clock=clock)
    ring.failed(SERVERS[0], TimeoutError())
    clock.now = 2
    assert SERVERS[0] not in list(ring.candidates("x"))


def test_chat_id_is_a_hash_of_the_key():
    assert chat_id("('sys', 'hello')") == chat_id("('sys', 'hello')") != chat_id("('sys', 'hi')")
    assert "hello" not in chat_id("('sys', 'hello')") and len(chat_id("x")) == 24


# ---- the client over mock servers --------------------------------------------------------------------------

class Broken(httpx.SyncByteStream):
    """A stream that sends `events`, then breaks as a killed server's connection does."""

    def __init__(self, events: list[dict]):
        self.events = events

    def __iter__(self):
        for e in self.events:
            yield f"data: {json.dumps(e)}\n\n".encode()
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def sse(*events: dict) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b": waiting\n\n"


@pytest.fixture
def model(tmp_path, tiny_llama):
    from tests.helpers import tiny_tokenizer

    tiny_llama.config.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    made = RemoteBackend(str(tmp_path), SERVERS, log=lambda m: None, api_key="sekret")
    yield made
    made.close()


def serve(model: RemoteBackend, handler) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)
    model.http = httpx.Client(transport=httpx.MockTransport(record), headers=model.http.headers)
    return seen


def row(key: str = "chat") -> Request:
    r = Request(RequestSpec(torch.tensor([[1, 5, 7]]), None, GenerationSettings(max_new_tokens=4), chat_key=key))
    r.text = type("Sink", (), {"put": lambda self, t: None, "end": lambda self: None})()
    return r


def generate(model: RemoteBackend, r: Request) -> None:
    RemoteDecoder(model, tokenizer=None)._one(r)


def host(request: httpx.Request) -> str:
    return f"http://{request.url.host}:1"


def test_a_refused_server_costs_the_chat_nothing(model):
    first = ranked(SERVERS, "chat")[0]

    def handler(request):
        if host(request) == first:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return httpx.Response(200, content=sse({"token_ids": [4, 5]}, {"token_ids": [6]}, {"finished": True, "cached_tokens": 2}))
    seen = serve(model, handler)
    r = row()
    generate(model, r)
    assert r.error is None and r.tokens == [4, 5, 6] and r.cached_tokens == 2
    assert [host(q) for q in seen] == ranked(SERVERS, "chat")[:2]
    assert all(q.headers["authorization"] == "Bearer sekret" and q.headers["x-chat-id"] == chat_id("chat") for q in seen)
    assert model.ring.is_down(first)


def test_a_stream_closed_before_its_first_token_goes_to_the_next_server(model):
    order = ranked(SERVERS, "chat")

    def handler(request):
        if host(request) == order[0]:
            return httpx.Response(200, stream=Broken([]))
        if host(request) == order[1]:
            return httpx.Response(502, text="Bad Gateway")
        return httpx.Response(200, content=sse({"token_ids": [9]}, {"finished": True}))
    seen = serve(model, handler)
    r = row()
    generate(model, r)
    assert r.error is None and r.tokens == [9]
    assert [host(q) for q in seen] == order


def test_a_server_lost_mid_answer_gives_a_clear_message_and_the_next_turn_works(model):
    first = ranked(SERVERS, "chat")[0]
    dead = {first}

    def handler(request):
        if host(request) in dead:
            return httpx.Response(200, stream=Broken([{"token_ids": [4]}, {"token_ids": [5]}]))
        return httpx.Response(200, content=sse({"token_ids": [8]}, {"finished": True}))
    serve(model, handler)
    r = row()
    generate(model, r)
    assert isinstance(r.error, AnswerLost) and r.tokens == [4, 5] and r.finished.is_set()
    assert "http" not in str(r.error) and "next message" in str(r.error)
    nxt = row()
    generate(model, nxt)
    assert nxt.error is None and nxt.tokens == [8]


def test_busy_servers_are_passed_over_and_all_busy_says_when_to_come_back(model):
    waits = {SERVERS[0]: "7", SERVERS[1]: "3", SERVERS[2]: "9"}
    serve(model, lambda q: httpx.Response(429, headers={"Retry-After": waits[host(q)]}, json={}))
    r = row()
    generate(model, r)
    assert isinstance(r.error, Busy) and r.error.retry_after_s == 3 and "3 s" in str(r.error)
    assert not any(model.ring.is_down(s) for s in SERVERS)  # busy is not down


def test_no_server_answering_is_one_readable_error(model):
    def handler(request):
        raise httpx.ConnectTimeout("timed out")
    serve(model, handler)
    with pytest.raises(NoServer, match="No steering server is answering"):
        model.read_residuals([[1, 2, 3]], 1)


def test_a_refused_key_names_the_variable(model):
    serve(model, lambda q: httpx.Response(401, json={"error": {}}))
    r = row()
    generate(model, r)
    assert isinstance(r.error, RuntimeError) and "STEERING_API_KEY" in str(r.error) and "sekret" not in str(r.error)


def test_inspector_reads_fail_over_too(model):
    from steering.serving.engine_api import encode_tensor

    first = ranked(SERVERS, repr([[1, 2, 3]]))[0]

    def handler(request):
        if host(request) == first:
            raise httpx.ReadTimeout("timed out")
        return httpx.Response(200, json={"residuals": [encode_tensor(torch.ones(3, 32))]})
    serve(model, handler)
    got = model.read_residuals([[1, 2, 3]], 1)
    assert torch.equal(got[0], torch.ones(3, 32))
