"""Stop from asyncio: a blocking answer generator served by an event loop, ended at the next token.

Why: Gradio (and any asyncio server) cancels a running event by cancelling its task. A plain
generator runs each `next` in a worker thread that is blocked until the next piece of text
arrives, so the cancel cannot reach it: the answer went on for a word or more, then Gradio closed
the generator on its event loop thread, whose `Stream.stop()` blocked every visitor for one more
token. `cancellable(fn)` serves `fn`'s generator as an async one instead: a cancel lands at once
on its `await`, every `Stream` the generator started (found through a `StopScope`, so nothing is
passed through the caller's signature) is told to stop, the decoder drops the row at the next
step boundary, and the generator is closed on its own thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol

_CURRENT: contextvars.ContextVar[StopScope | None] = contextvars.ContextVar("steering_stop_scope", default=None)
_DONE = object()


class StopTarget(Protocol):
    def request_stop(self) -> None: ...


class StopScope:
    """What `stop()` must reach: every stream started while this scope was current (`run`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[StopTarget] = []
        self.stopped = False

    @staticmethod
    def current() -> StopScope | None:
        return _CURRENT.get()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        token = _CURRENT.set(self)
        try:
            return fn(*args)
        finally:
            _CURRENT.reset(token)

    def add(self, member: StopTarget) -> None:
        """Join the scope; a member joining a stopped scope is stopped at once (Stop before its first token)."""
        with self._lock:
            self._members.append(member)
            stopped = self.stopped
        if stopped:
            member.request_stop()

    def stop(self) -> None:
        """Ask every member to end at its next token boundary; returns at once."""
        with self._lock:
            self.stopped = True
            members = list(self._members)
        for m in members:
            m.request_stop()


class _Thread(threading.Thread):
    """The one thread an answer's generator runs on: each call waits here, off the event loop. A daemon,
    so a server shutting down mid-answer does not wait for the answer."""

    def __init__(self, scope: StopScope) -> None:
        super().__init__(name="steering-answer", daemon=True)
        self.scope, self.calls = scope, queue.SimpleQueue()
        self.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Future:
        done: Future = Future()
        self.calls.put((done, contextvars.copy_context(), fn, args))  # the caller's context: Gradio's request, for gr.Info
        return done

    def end(self) -> None:
        self.calls.put(None)

    def run(self) -> None:
        while (call := self.calls.get()) is not None:
            done, context, fn, args = call
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(context.run(self.scope.run, fn, *args))
                except BaseException as exc:  # noqa: BLE001 (handed to the awaiting task, as asyncio's executor does)
                    done.set_exception(exc)


async def stoppable(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Iterate the generator `make()` from asyncio (see the module docstring). Cancelling the consuming
    task stops its streams at once; the cancel completes when their rows have ended (one token step)."""
    scope = StopScope()
    thread = _Thread(scope)
    job: Future | None = None
    it: Iterator[Any] | None = None
    try:
        it = await asyncio.wrap_future(thread.call(make))
        while True:
            job = thread.call(next, it, _DONE)
            item = await asyncio.wrap_future(job)
            job = None
            if item is _DONE:
                return
            yield item
    finally:
        try:
            scope.stop()
            if job is not None and not job.done():  # its `next` returns once the stopped rows have ended
                await asyncio.wait([asyncio.wrap_future(job)])
            if it is not None:
                await asyncio.wrap_future(thread.call(it.close))
        finally:
            thread.end()


def cancellable(fn: Callable[..., Iterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """`fn` (a generator function) as an async generator function with its signature, for Gradio events."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with contextlib.aclosing(stoppable(functools.partial(fn, *args, **kwargs))) as items:
            async for item in items:
                yield item

    return run
