"""The consumer's side of one or more requests: their text as it arrives, on the caller's thread.

No thread of its own: the requests' batch thread puts pieces on one queue and this reads it.
Closing the iterator or `stop()` ends every request at its next step boundary and waits until each
has ended, so nothing outlives the caller; a `StopScope` (`stoppable`) reaches a stream without waiting.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from steering.generate.decode import END, Request
from steering.generate.stoppable import StopScope


class Stream:
    """Iterate for text pieces (one request) or `(i, piece)` pairs (`tagged`, several requests)."""

    def __init__(self, requests: Sequence[Request], events: queue.SimpleQueue,
                 submit: Callable[[Sequence[Request]], None], tagged: bool = False):
        self.requests, self.events, self._submit, self.tagged = list(requests), events, submit, tagged
        self._started = False

    def start(self) -> "Stream":
        if not self._started:
            self._started = True
            scope = StopScope.current()  # started under `stoppable`: its Stop reaches these requests
            if scope is not None:
                scope.add(self)
            self._submit(self.requests)
        return self

    def __iter__(self) -> Iterator:
        self.start()
        open_count = len(self.requests)
        try:
            while open_count:
                tag, piece = self.events.get()
                if piece is END:
                    open_count -= 1
                else:
                    yield (tag, piece) if self.tagged else piece
        finally:
            self.stop()
        if self.error is not None:
            raise self.error

    def request_stop(self) -> None:
        """Ask every request to end at its next step boundary, without the token of the step under way; returns at once."""
        for r in self.requests:
            r.stop_event.set()

    def stop(self, timeout: float | None = None) -> None:
        """`request_stop()`, then wait until each request has ended; where that ended its whole batch, also
        until the batch's thread has exited (other rows of a batch go on)."""
        self.request_stop()
        if not self._started:
            return
        for r in self.requests:
            r.finished.wait(timeout)
        for t in {r.thread for r in self.requests if all(x.finished.is_set() for x in r.batch)} - {None}:
            if t is not threading.current_thread():
                t.join(timeout)

    @property
    def stop_event(self):
        """The first request's Stop flag (set by `stop()`)."""
        return self.requests[0].stop_event

    @property
    def error(self) -> BaseException | None:
        return next((r.error for r in self.requests if r.error is not None), None)

    @property
    def running(self) -> bool:
        return self._started and not all(r.finished.is_set() for r in self.requests)

    @property
    def new_token_ids(self) -> Tensor | None:
        """The first request's generated ids (its end-of-turn token included), once it has ended."""
        r = self.requests[0]
        return torch.tensor(r.tokens, dtype=torch.long) if r.finished.is_set() else None

    @property
    def logits(self) -> Tensor:
        """The first request's raw next-token logits per step (steps, V), when made with `record_logits`."""
        return torch.stack(self.requests[0].logits)
