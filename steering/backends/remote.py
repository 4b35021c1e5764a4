"""`backend: remote`: the app's engine without a model of its own; one or more steering servers
(`python -m steering.serve`, any backend) generate, and answer the inspector's reads (`engine_api`).

Each conversation goes to one server, chosen by a hash of its opening (system prompt and first message):
every turn of a chat shares it, so a chat stays on the server that holds its prefix cache, with no session
state, and different chats spread over the servers. The app keeps the tokenizer, the SAE and the vectors (small);
the servers run the same config.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Sequence

import torch
from torch import Tensor

from steering.backends.payload import to_payload
from steering.backends.served import ServedModel, tokenizer_for
from steering.generate.decode import InFlight, Request
from steering.serving.wire import decode_tensor, encode_tensor

TIMEOUT_S = 600
ROUTES_KEPT = 1000


def server_for(servers: Sequence[str], key: str) -> str:
    """The server a conversation goes to: sha256 of its key (`Request.chat_key`), modulo the servers."""
    return servers[int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % len(servers)]


class RemoteModel(ServedModel):
    def __init__(self, path: str, servers: Sequence[str]):
        import httpx

        super().__init__(path, sae_source=lambda layer: {})  # a server pins with its own SAE of that layer
        self.servers = [s.rstrip("/") for s in servers]
        self.http = httpx.Client(timeout=TIMEOUT_S)

    def _post(self, server: str, path: str, body: dict) -> dict:
        r = self.http.post(server + path, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"steering server {server} answered {r.status_code} to {path}: {r.text[:300]}")
        return r.json()

    def _payload(self, plan):
        return None if plan is None or plan.is_empty else to_payload(plan, self.sae_source)

    def read_residuals(self, prompts: Sequence[Sequence[int]], layer: int) -> list[Tensor]:
        self.check_layer(layer)
        prompts = [list(map(int, p)) for p in prompts]
        got = self._post(server_for(self.servers, repr(prompts[:1])), "/v1/steering/residuals",
                         {"prompts": prompts, "layer": layer, "steering": self._payload(self.plan)})
        return [decode_tensor(r) for r in got["residuals"]]

    def paper_scores(self, layer, units, prompts, strength, tokens):
        got = self._post(self.servers[0], "/v1/steering/output_scores", {
            "layer": layer, "directions": encode_tensor(units), "prompts": [p.reshape(-1).tolist() for p in prompts],
            "strength": float(strength), "tokens": tokens.reshape(-1).tolist()})
        return torch.tensor(got["score"]), torch.tensor(got["base"])

    def close(self) -> None:
        self.http.close()


class RemoteDecoder:
    """`Decoder.run`'s contract over HTTP: each row streams token ids from its chat's server and detokenizes
    them here; Stop closes the stream, which stops the answer on the server (a vLLM server aborts it)."""

    per_row = True

    def __init__(self, model: RemoteModel, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.in_flight = InFlight()
        self.routes: deque[str] = deque(maxlen=ROUTES_KEPT)  # the latest requests' servers, in order (tests, logs)

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
        ids = [int(t) for t in r.input_ids[0].tolist()]
        server = server_for(self.model.servers, r.chat_key or repr(ids))
        self.routes.append(server)
        body = {"prompt_token_ids": ids, "steering": self.model._payload(r.plan), "settings": r.settings.to_dict()}
        try:
            with self.model.http.stream("POST", server + "/v1/steering/generate", json=body) as resp:
                if resp.status_code != 200:
                    raise RuntimeError(f"steering server {server} answered {resp.status_code}: {resp.read()[:300]!r}")
                for line in resp.iter_lines():
                    if r.stop_event.is_set():
                        break
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise RuntimeError(f"steering server {server}: {event['error']}")
                    for token in event.get("token_ids", ()):
                        r.tokens.append(int(token))
                        r.text.put(torch.tensor([int(token)]))
                    r.cached_tokens = int(event.get("cached_tokens", r.cached_tokens))
        except BaseException as exc:  # surfaced to the row's consumer
            r.error = exc
        finally:
            r.finish()


def open_remote_model(config) -> tuple[RemoteModel, object]:
    from steering.model.loading import resolve_model_path

    if not config.servers:
        raise ValueError("backend: remote needs servers: a list of steering server URLs (python -m steering.serve). "
                         "Fix: add servers: [http://127.0.0.1:8000]")
    path = resolve_model_path(config.model_source())
    return RemoteModel(path, config.servers), tokenizer_for(path)
