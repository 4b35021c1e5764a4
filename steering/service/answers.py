"""The answers each page session is streaming, so that Stop and Clear reach exactly that page's answers.

Why not the UI library's own cancel (Gradio's `cancels=`): it is keyed by the event, not by the answer.
The page's cancel closes whatever answer its Send currently holds once its `/cancel` request returns, and
the server's `/cancel` ends every running task of that event in the session; a Stop whose request was still
on its way when the visitor cleared and sent again therefore ended the *next* answer, and left the page
believing none was running, so later Sends were dropped and Stop had nothing to stop (docs/reliability.md).

Here a page stamps each Send, Stop and Clear with its own clock. `Answers.begin` opens a `Turn` for a Send;
`Answers.stop` ends every turn of the session sent at or before the Stop's stamp, at its next token, and
remembers the stamp so that a turn still waiting in the queue ends before it starts. A newer Send ends the
session's older turns the same way. A turn's stream then ends as any generator does, so the event completes
normally and whatever follows it (the inspector) runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from steering.generate.stoppable import cancellable, stoppable

__all__ = ["Answers", "Turn", "cancellable"]  # cancellable: the named API's /chat, whose client cancels through the server

REMEMBERED_SESSIONS = 4096
"""Sessions whose last Stop is kept (the oldest are forgotten; a Stop matters only to answers still queued)."""


class Turn:
    """One answer of one session, from its Send until it ends."""

    def __init__(self, session: str, sent_at: float):
        self.session, self.sent_at = session, sent_at
        self.cleared = self.stopped = False
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()

    def stop(self, cleared: bool = False) -> None:
        """End at the next token (from any thread); `cleared`: a Clear asked, so nothing of it is to be shown."""
        self.cleared = self.cleared or cleared
        self.stopped = True
        self._loop.call_soon_threadsafe(self._stop_event.set)

    async def stream(self, make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
        """The items of the generator `make()` (run off the event loop by `stoppable`) until it ends or the turn
        is stopped; a stop cancels the wait for the next item, which stops the generator's streams at once."""
        if self.stopped:
            return
        items, item = stoppable(make), None
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            while True:
                item = asyncio.ensure_future(anext(items))
                await asyncio.wait({item, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not item.done():
                    return  # stopped while waiting: the `finally` ends the wait and the generator
                try:
                    value = item.result()
                except StopAsyncIteration:
                    return
                if self.stopped:  # a piece that was already on its way when the stop came
                    return
                yield value
        finally:
            stop.cancel()
            if item is not None and not item.done():
                item.cancel()  # lands on stoppable's await: its streams stop, and it waits for their last step
                await asyncio.wait({item})
            await items.aclose()


class Answers:
    """Every session's turns in flight, and each session's last Stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, set[Turn]] = {}
        self._stops: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def begin(self, session: str, sent_at: float) -> Turn:
        """A turn for a Send stamped `sent_at`: already stopped if a Stop or Clear of the session came after it
        was sent; the session's older turns are stopped (a new message supersedes an answer still running)."""
        turn = Turn(session, sent_at)
        with self._lock:
            stopped_at, cleared = self._stops.get(session, (float("-inf"), False))
            older = [t for t in self._turns.get(session, ()) if t.sent_at < sent_at]
            self._turns.setdefault(session, set()).add(turn)
        if stopped_at >= sent_at:
            turn.stop(cleared)
        for t in older:
            t.stop()
        return turn

    def end(self, turn: Turn) -> None:
        with self._lock:
            turns = self._turns.get(turn.session, set())
            turns.discard(turn)
            if not turns:
                self._turns.pop(turn.session, None)

    def stop(self, session: str, at: float, clear: bool = False) -> int:
        """Stop the session's turns sent at or before `at` (and any still queued); returns how many were running."""
        with self._lock:
            last, _ = self._stops.pop(session, (float("-inf"), False))
            self._stops[session] = (max(last, at), clear)
            while len(self._stops) > REMEMBERED_SESSIONS:
                self._stops.popitem(last=False)
            hit = [t for t in self._turns.get(session, ()) if t.sent_at <= at]
        for t in hit:
            t.stop(clear)
        return len(hit)

    @property
    def running(self) -> int:
        """Turns in flight, over all sessions."""
        with self._lock:
            return sum(len(turns) for turns in self._turns.values())
