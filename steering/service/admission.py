"""A bounded waiting line: past its limit a request is turned away at once, with an estimate of when to come back,
instead of waiting without end (a hang, as a visitor sees it).

Used twice: the app's queue, full, answers a new chat with `busy_message` (Gradio's queue holds the line), and the
steering server counts the requests it holds itself (`enter`, then the place's `leave`; a 429 with `Retry-After`
when full).

The estimate of when a place frees: with `workers` requests in progress, each lasting about the median duration of
the last `kept` ones, one of them ends every median / workers seconds (Little's law), so
`ceil(median(durations) / workers)`, at least 1 s. The app passes the chats it runs at once (a place in its queue
frees when one of them ends); the server its limit (when full, that many are in progress). Before any request has
finished, `typical_s` stands in for the median.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

from steering.service.limits import UserError


class Full(UserError):
    """The waiting line is full; `retry_after_s` is when a place is expected to free up."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Admission:
    def __init__(self, limit: int, workers: int = 1, typical_s: float = 10.0, kept: int = 50,
                 clock: Callable[[], float] = time.monotonic):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"the admission limit must be a whole number of at least 1, got {limit!r}")
        self.limit, self.workers, self.typical_s, self.clock = limit, max(1, int(workers)), typical_s, clock
        self.durations: deque[float] = deque(maxlen=kept)
        self.in_flight = 0
        self._lock = threading.Lock()

    def retry_after_s(self) -> int:
        median = statistics.median(self.durations) if self.durations else self.typical_s
        return max(1, math.ceil(median / self.workers))

    def busy_message(self, waiting: int) -> str:
        """What a request turned away from a full line of `waiting` is told."""
        return f"The app is busy: {waiting} chats are waiting. Try again in about {self.retry_after_s()} s."

    def record(self, seconds: float) -> None:
        """A request's duration, from its start to its end (the estimate's input)."""
        self.durations.append(float(seconds))

    def enter(self) -> "Place":
        """Hold a place (`Full` when all `limit` are held); free it with the returned place's `leave()`."""
        with self._lock:
            if self.in_flight >= self.limit:
                wait = self.retry_after_s()
                raise Full(f"The server is busy: {self.in_flight} requests are in progress, its limit. "
                           f"Try again in about {wait} s.", wait)
            self.in_flight += 1
        return Place(self, self.clock())

    def _leave(self, started: float) -> None:
        with self._lock:
            self.in_flight -= 1
        self.record(self.clock() - started)


class Place:
    """A held place; `leave()` frees it once, however many paths call it (a stream's end, its response's end)."""

    def __init__(self, admission: Admission, started: float):
        self._admission, self._started, self._left = admission, started, False
        self._lock = threading.Lock()

    def leave(self) -> None:
        with self._lock:
            if self._left:
                return
            self._left = True
        self._admission._leave(self._started)
