"""steering/generate/stoppable.py: a cancelled consumer stops its streams at once, mid-step, off the event loop."""

import asyncio
import contextvars
import inspect
import queue
import threading
from collections.abc import Iterator

import pytest

from steering.config import GenerationSettings
from steering.generate.decode import Request, RequestSpec
from steering.generate.stoppable import StopScope, cancellable, stoppable
from steering.generate.stream import Stream

CANCEL_IN_STEP = 3


class FakeDecoder:
    """A submit function whose thread runs "steps" like `Decoder.run`: a step's piece is put at its boundary
    unless Stop came during the step. Step CANCEL_IN_STEP starts once the consumer, holding every earlier
    piece, is inside its next `next` (which only Stop can end now), announces itself and waits for Stop:
    the cancel lands mid-step."""

    def __init__(self, cancel_in_step: int | None = CANCEL_IN_STEP, steps: int = 1000):
        self.cancel_in_step, self.limit, self.pieces, self.steps = cancel_in_step, steps, [], 0
        self.caught_up, self.mid_step = threading.Event(), threading.Event()
        self.stop_reached_the_step: bool | None = None

    def __call__(self, rows):
        (row,) = rows

        def run():
            for step in range(1, self.limit + 1):
                self.steps = step
                if step == self.cancel_in_step:
                    self.caught_up.wait(10)
                    self.mid_step.set()
                    self.stop_reached_the_step = row.stop_event.wait(10)
                if row.stop_event.is_set():  # the step boundary: Stop drops this step's piece
                    break
                self.pieces.append(f"t{step} ")
                row.events.put((0, f"t{step} "))
            row.finish()

        t = threading.Thread(target=run, name="fake-decoder")
        row.batch, row.thread = rows, t
        t.start()


def _answer(decoder: FakeDecoder, closed_on: list) -> Iterator[str]:
    """What `DemoService.chat` does: a stream, closed in `finally`."""
    events = queue.SimpleQueue()
    stream = Stream([Request(RequestSpec(None, None, GenerationSettings()), events)], events, decoder).start()
    try:
        for n, piece in enumerate(stream, 1):
            yield piece
            if n == CANCEL_IN_STEP - 1:
                decoder.caught_up.set()  # the next `next` is under way: only Stop can end it now
    finally:
        closed_on.append(threading.current_thread())
        stream.stop()


def _answer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "steering-answer"]


def _no_answer_thread_left() -> bool:
    for t in _answer_threads():
        t.join(5)
    return not _answer_threads()


def test_a_cancel_mid_step_stops_the_stream_at_that_step_and_completes_once_it_has_ended():
    decoder, closed_on, got = FakeDecoder(), [], []

    async def main():
        async def consume():
            async for piece in stoppable(lambda: _answer(decoder, closed_on)):
                got.append(piece)

        task = asyncio.create_task(consume())
        await asyncio.get_running_loop().run_in_executor(None, decoder.mid_step.wait, 10)
        task.cancel()  # what Gradio's /cancel does to the event's task
        with pytest.raises(asyncio.CancelledError):
            await task
        return threading.current_thread()

    loop_thread = asyncio.run(main())
    assert decoder.stop_reached_the_step  # the cancel reached the decoder while its step ran
    assert decoder.steps == CANCEL_IN_STEP and len(decoder.pieces) == CANCEL_IN_STEP - 1  # no piece, no step after
    assert got == decoder.pieces
    assert closed_on and closed_on[0] is not loop_thread  # closed on the answer's thread, never on the event loop
    assert _no_answer_thread_left()


def test_an_answer_run_to_its_end_yields_every_piece_and_leaves_nothing_behind():
    decoder, closed_on = FakeDecoder(cancel_in_step=None, steps=5), []

    async def main():
        return [p async for p in stoppable(lambda: _answer(decoder, closed_on))]

    assert asyncio.run(main()) == decoder.pieces == [f"t{i} " for i in range(1, 6)]
    assert len(closed_on) == 1 and _no_answer_thread_left()


def test_a_stream_started_after_stop_is_stopped_before_it_is_submitted():
    scope, seen = StopScope(), []
    scope.stop()
    events = queue.SimpleQueue()
    r = Request(RequestSpec(None, None, GenerationSettings()), events)
    scope.run(lambda: Stream([r], events, lambda rows: seen.append(rows[0].stop_event.is_set())).start())
    assert seen == [True]  # the decoder skips a request stopped before its batch starts


def test_errors_and_the_callers_context_reach_through_the_answer_thread():
    var = contextvars.ContextVar("request", default=None)

    def gen():
        yield var.get()  # Gradio's request context, which gr.Info needs
        raise ValueError("bad input")

    async def main():
        var.set("visitor-1")
        got = []
        with pytest.raises(ValueError, match="bad input"):
            async for item in stoppable(gen):
                got.append(item)
        return got

    assert asyncio.run(main()) == ["visitor-1"]
    assert _no_answer_thread_left()


def test_cancellable_keeps_the_signature_gradio_reads():
    def answer(message: str, tokens: int | None = None) -> Iterator[str]:
        """Stream an answer."""
        yield message * (tokens or 1)

    wrapped = cancellable(answer)
    assert inspect.isasyncgenfunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(answer)
    assert wrapped.__doc__ == answer.__doc__ and wrapped.__annotations__ == answer.__annotations__

    async def main():
        return [x async for x in wrapped("ab", tokens=2)]

    assert asyncio.run(main()) == ["abab"]
