"""`backend: remote`: the app's engine without a model of its own; one or more steering servers
(`python -m steering.serve`, any backend) generate, and answer the inspector's reads (`engine_api`).

Each conversation goes to one server, chosen from a hash of its opening (system prompt and first message) by
`routing.Ring`: every turn of a chat shares it, so a chat stays on the server that holds its prefix cache, with no
session state, and different chats spread over the servers. A server that stops answering is passed over (the
ring's next one takes the request) until a health check brings it back. Every request carries `X-Chat-Id` (a
hash of the chat's key), so `servers:` may also name one router (nginx, docs/serving.md) that does the same, and
the key in `STEERING_API_KEY` (`auth`). The app keeps the tokenizer, the SAE and the vectors (small); the servers
run the same config.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx
import torch
from torch import Tensor

from steering.backends.base import log_to_stderr
from steering.backends.routing import AnswerLost, Busy, NoServer, Ring, chat_id
from steering.backends.served import ServedBackend
from steering.config import DemoConfig
from steering.generate.decode import InFlight, Request
from steering.serving.auth import bearer, key_from_env
from steering.serving.wire import decode_tensor, encode_tensor
from steering.steer.plan import SteeringPlan

ROUTES_KEPT = 1000
CONNECT_S = 3.0
"""A server that takes longer to accept a connection is taken for down."""
READ_S = 120.0
"""Longest wait for an inspector read's answer."""
STREAM_READ_S = 30.0
"""Longest silence in an answer's stream (the server sends a heartbeat every `engine_api.HEARTBEAT_S`)."""
HEALTH_S = 2.0
UNAVAILABLE = (502, 503, 504)  # a router or proxy whose upstream is gone
T = TypeVar("T")


class _Busy(Exception):
    def __init__(self, retry_after_s: int):
        self.retry_after_s = retry_after_s


class _Unavailable(Exception):
    pass


def check_answer(server: str, path: str, resp: httpx.Response) -> None:
    """Raise unless `resp` is a 200: `_Busy` (429), `_Unavailable` (502-504: try another server), else an error."""
    if resp.status_code == 200:
        return
    if resp.status_code == 429:
        wait = resp.headers.get("Retry-After", "")
        raise _Busy(int(wait) if wait.isdigit() else 5)  # seconds; a date (also allowed) counts as 5
    if resp.status_code in UNAVAILABLE:
        raise _Unavailable(f"answered {resp.status_code}")
    if resp.status_code == 401:
        raise RuntimeError(f"steering server {server} refused the API key (401): set STEERING_API_KEY to the key the "
                           "servers were started with")
    raise RuntimeError(f"steering server {server} answered {resp.status_code} to {path}: {resp.read()[:300]!r}")


class RemoteBackend(ServedBackend):
    """Generation and the inspector's reads go to steering servers over HTTP (see the module docstring)."""

    name = "remote"

    def __init__(self, path: str, servers: Sequence[str], log: Callable[[str], None] = log_to_stderr,
                 api_key: str | None = None):
        super().__init__(path, sae_source=lambda layer: {}, log=log)  # a server pins with its own SAE of that layer
        self.servers = [s.rstrip("/") for s in servers]
        self.http = httpx.Client(timeout=httpx.Timeout(READ_S, connect=CONNECT_S), headers=bearer(api_key))
        self.ring = Ring(self.servers, self._healthy)
        self.decoder = RemoteDecoder(self, self.tokenizer)

    @classmethod
    def load(cls, config: DemoConfig, log: Callable[[str], None] = log_to_stderr) -> "RemoteBackend":
        from steering.model.loading import resolve_model_path

        if not config.servers:
            raise ValueError("backend: remote needs servers: a list of steering server URLs (python -m steering.serve). "
                             "Fix: add servers: [http://127.0.0.1:8000]")
        return cls(resolve_model_path(config.model_source()), config.servers, log, api_key=key_from_env())

    def _healthy(self, server: str) -> bool:
        return self.http.get(server + "/health", timeout=HEALTH_S).status_code == 200

    def route(self, key: str, attempt: Callable[[str], T]) -> T:
        """`attempt(server)` on the first server of `key`'s order that answers (`routing.Ring`)."""
        busy, tried = [], 0
        for server in self.ring.candidates(key):
            tried += 1
            try:
                result = attempt(server)
            except (httpx.TransportError, _Unavailable) as exc:  # refused, timed out, closed: nothing was used yet
                self.ring.failed(server, exc)
                continue
            except _Busy as exc:
                busy.append(exc.retry_after_s)
                continue
            self.ring.answered(server)
            return result
        raise Busy(min(busy)) if busy else NoServer(tried)

    def _post(self, key: str, path: str, body: dict) -> dict:
        def attempt(server: str) -> dict:
            resp = self.http.post(server + path, json=body, headers={"X-Chat-Id": chat_id(key)})
            check_answer(server, path, resp)
            return resp.json()
        return self.route(key, attempt)

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int, plan: SteeringPlan | None = None) -> list[Tensor]:
        self.check_layer(layer)
        prompts = [list(map(int, p)) for p in prompts]
        got = self._post(repr(prompts[:1]), "/v1/steering/residuals",
                         {"prompts": prompts, "layer": layer, "steering": self.payload(plan)})
        return [decode_tensor(r) for r in got["residuals"]]

    def output_scores(self, layer: int, units: Tensor, prompts: Sequence[Tensor], strength: float,
                      tokens: Tensor) -> tuple[Tensor, Tensor]:
        prompts = [p.reshape(-1).tolist() for p in prompts]
        got = self._post(repr(prompts[:1]), "/v1/steering/output_scores", {
            "layer": layer, "directions": encode_tensor(units), "prompts": prompts,
            "strength": float(strength), "tokens": tokens.reshape(-1).tolist()})
        return torch.tensor(got["score"]), torch.tensor(got["base"])

    def close(self) -> None:
        self.http.close()


class RemoteDecoder:
    """`Decoder.run`'s contract over HTTP: each row streams token ids from its chat's server and detokenizes
    them here; Stop closes the stream, which stops the answer on the server (a vLLM server aborts it)."""

    per_row = True

    def __init__(self, backend: RemoteBackend, tokenizer):
        self.backend, self.tokenizer = backend, tokenizer
        self.in_flight = InFlight()
        self.routes: deque[str] = deque(maxlen=ROUTES_KEPT)  # the servers that answered the latest requests (tests)

    @property
    def active(self) -> int:
        return self.in_flight.count

    def run(self, rows: Sequence[Request]) -> None:
        threads = []
        for r in self.in_flight.take(rows):
            r.start(self.tokenizer)
            threads.append(threading.Thread(target=self._one, args=(r,), daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _one(self, r: Request) -> None:
        spec = r.spec
        ids = [int(t) for t in spec.input_ids[0].tolist()]
        key = spec.chat_key or repr(ids)
        body = {"prompt_token_ids": ids, "steering": self.backend.payload(spec.plan), "settings": spec.settings.to_dict()}
        try:
            self.backend.route(key, lambda server: self._stream(r, server, body, chat_id(key)))
        except BaseException as exc:  # surfaced to the row's consumer
            r.error = exc
        finally:
            r.finish()

    def _stream(self, r: Request, server: str, body: dict, chat: str) -> None:
        """The answer from `server`. A failure before the first token reaches `route`, which tries the next
        server; after it, the tokens shown cannot be taken back: `AnswerLost`."""
        try:
            with self.backend.http.stream("POST", server + "/v1/steering/generate", json=body,
                                          headers={"X-Chat-Id": chat},
                                          timeout=httpx.Timeout(STREAM_READ_S, connect=CONNECT_S)) as resp:
                check_answer(server, "/v1/steering/generate", resp)
                self.routes.append(server)
                if not self._read(r, server, resp):
                    raise httpx.RemoteProtocolError("the answer's stream ended before its last event")
        except httpx.TransportError as exc:
            if not r.tokens:
                raise
            self.backend.ring.failed(server, exc)
            raise AnswerLost() from None

    @staticmethod
    def _read(r: Request, server: str, resp: httpx.Response) -> bool:
        """Tokens from the stream into the row; True once it ended (its last event, or Stop)."""
        for line in resp.iter_lines():
            if r.stop_event.is_set():
                return True
            if not line.startswith("data: "):
                continue  # heartbeats
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"steering server {server}: {event['error']}")
            for token in event.get("token_ids", ()):
                r.tokens.append(int(token))
                r.text.put(torch.tensor([int(token)]))
            r.cached_tokens = int(event.get("cached_tokens", r.cached_tokens))
            if event.get("finished"):
                return True
        return r.stop_event.is_set()
