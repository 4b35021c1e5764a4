"""steering/service/answers.py: a page's Stop and Clear reach exactly that page's answers, by the page's own clock."""

from __future__ import annotations

import asyncio
import threading

from steering.service import answers
from steering.service.answers import Answers


class Stream:
    """A generator that yields a piece each time it is allowed to (`step`), like a decoder's stream, and
    records whether it was closed."""

    def __init__(self):
        self.allowed = threading.Semaphore(0)
        self.closed = threading.Event()

    def make(self):
        try:
            while True:
                self.allowed.acquire()
                yield "piece"
        finally:
            self.closed.set()

    def step(self, n=1):
        for _ in range(n):
            self.allowed.release()


async def collect(turn, stream, into):
    async for item in turn.stream(stream.make):
        into.append(item)


def test_stop_ends_a_running_answer_at_once_and_closes_its_generator():
    async def main():
        book, stream, got = Answers(), Stream(), []
        turn = book.begin("tab", sent_at=100)
        task = asyncio.ensure_future(collect(turn, stream, got))
        stream.step(2)
        while len(got) < 2:
            await asyncio.sleep(0.01)
        assert book.stop("tab", at=150) == 1
        await asyncio.sleep(0.2)
        stream.step()  # the step in progress when Stop came ends (a decoder's row ends at its step boundary)
        await asyncio.wait_for(task, 5)
        assert stream.closed.is_set()
        assert got == ["piece", "piece"] and turn.stopped and not turn.cleared
        book.end(turn)
        assert book.running == 0
    asyncio.run(main())


def test_a_stop_reaches_only_its_own_session_and_answers_sent_before_it():
    async def main():
        book = Answers()
        mine, other, later = book.begin("tab", 100), book.begin("other tab", 100), None
        book.stop("tab", at=150)
        later = book.begin("tab", 200)
        await asyncio.sleep(0)
        assert mine.stopped and not other.stopped and not later.stopped
    asyncio.run(main())


def test_a_stop_that_comes_before_a_queued_answer_starts_ends_it_before_its_first_piece():
    async def main():
        book, stream, got = Answers(), Stream(), []
        book.stop("tab", at=150, clear=True)
        turn = book.begin("tab", sent_at=120)  # sent before the Clear, started after it
        await collect(turn, stream, got)
        assert got == [] and turn.stopped and turn.cleared and not stream.closed.is_set()  # never even started
    asyncio.run(main())


def test_a_new_message_supersedes_the_answer_still_running():
    async def main():
        book = Answers()
        first = book.begin("tab", 100)
        second = book.begin("tab", 200)
        await asyncio.sleep(0)
        assert first.stopped and not first.cleared and not second.stopped
    asyncio.run(main())


def test_stops_of_forgotten_sessions_do_not_pile_up(monkeypatch):
    monkeypatch.setattr(answers, "REMEMBERED_SESSIONS", 3)
    book = Answers()
    for i in range(10):
        book.stop(f"tab {i}", at=i)
    assert len(book._stops) == 3 and list(book._stops) == ["tab 7", "tab 8", "tab 9"]
