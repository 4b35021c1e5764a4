"""Which steering server a chat goes to, and what happens when one stops answering (`backend: remote`).

Rendezvous hashing: a chat's key ranks every server by sha256(key, server), and the chat goes to the first one
that answers. So every turn of a chat lands on the same server while it is up (its prefix cache), a dead
server's chats spread over the others while nobody else's move, and when it is back its chats return to it.
A server that refused a connection, timed out, closed a stream or answered 502/503/504 is set aside for `down_s`;
after that one `GET /health` decides whether it takes traffic again. A server that is only busy (429) is skipped
for that request, not set aside. Each change of a server's state is one log line, never a traceback.

The errors a visitor may see are `ConnectionError`s whose message is written for them (no server names).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

log = logging.getLogger("steering.remote")

DOWN_S = 10.0
"""How long a server that stopped answering is left out before a health check may bring it back."""


class NoServer(ConnectionError):
    """Every server was down or failed this request."""

    def __init__(self, tried: int):
        super().__init__(f"No steering server is answering right now ({tried} tried). Your conversation is kept; "
                         "try again in a minute.")


class AnswerLost(ConnectionError):
    """The server generating an answer went away after the first tokens: they cannot be taken back."""

    def __init__(self):
        super().__init__("The server writing this answer stopped mid-answer. The answer so far is kept; send your "
                         "next message and another server answers it.")


class Busy(ConnectionError):
    """Every server that answered was at its admission limit (429)."""

    def __init__(self, retry_after_s: int):
        self.retry_after_s = retry_after_s
        super().__init__(f"The servers are busy. Try again in about {retry_after_s} s.")


def chat_id(key: str) -> str:
    """The id sent as `X-Chat-Id` (a router's stickiness key): a hash, so no visitor text leaves in a header."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def ranked(servers: Sequence[str], key: str) -> list[str]:
    """`servers` in the order chat `key` tries them: by sha256(key, server), highest first (rendezvous hashing)."""
    def weight(server: str) -> bytes:
        return hashlib.sha256(f"{key}\x00{server}".encode()).digest()
    return sorted(servers, key=weight, reverse=True)


class Ring:
    """The servers, their up/down state and the order a request tries them in; shared by every thread."""

    def __init__(self, servers: Sequence[str], healthy: Callable[[str], bool], down_s: float = DOWN_S,
                 clock: Callable[[], float] = time.monotonic):
        self.servers, self.healthy, self.down_s, self.clock = list(servers), healthy, down_s, clock
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def candidates(self, key: str) -> Iterator[str]:
        """The servers to try for `key`, in its order, those set aside left out. One whose time out is over is
        health-checked first (by the one request that finds it so; the others pass it by meanwhile). The servers
        set aside come last, as a last resort, so a single server (a router) is always tried."""
        skipped = []
        for server in ranked(self.servers, key):
            with self._lock:
                until = self._down_until.get(server)
                due = until is not None and self.clock() >= until
                if due:  # this request checks it; the others skip it for one more period
                    self._down_until[server] = self.clock() + self.down_s
            if until is None or (due and self._check(server)):
                yield server
            elif not due:
                skipped.append(server)
        yield from skipped

    def _check(self, server: str) -> bool:
        try:
            ok = bool(self.healthy(server))
        except Exception:  # a failed check is a "no"; the server stays set aside
            ok = False
        if ok:
            self.answered(server)
        return ok

    def failed(self, server: str, exc: BaseException) -> None:
        """`server` stopped answering: leave it out for `down_s` (one log line when it goes down)."""
        with self._lock:
            was_up = server not in self._down_until
            self._down_until[server] = self.clock() + self.down_s
        if was_up:
            log.warning("steering server %s stopped answering (%s); its chats go to the next server, health check "
                        "in %.0f s", server, describe(exc), self.down_s)

    def answered(self, server: str) -> None:
        with self._lock:
            was_down = self._down_until.pop(server, None) is not None
        if was_down:
            log.warning("steering server %s answers again and takes its chats back", server)

    def is_down(self, server: str) -> bool:
        with self._lock:
            return server in self._down_until


def describe(exc: BaseException) -> str:
    """One line for the log: the error's type and its first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
