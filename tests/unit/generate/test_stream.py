"""steering/generate/stream.py: the consumer reads one queue, in order, and Stop reaches every request."""

import queue
import threading

import pytest

from steering.config import GenerationSettings
from steering.generate.decode import Request, RequestSpec
from steering.generate.stream import Stream


def _pair():
    events = queue.SimpleQueue()
    return events, [Request(RequestSpec(None, None, GenerationSettings(), tag=i), events) for i in (0, 1)]


def _worker(pieces, stop_after=None, error=None):
    """A submit function whose batch thread puts `pieces` ((tag, text) pairs) and then ends every row."""

    def submit(rows):
        def run():
            for n, (tag, text) in enumerate(pieces):
                if stop_after is not None and n >= stop_after and all(r.stop_event.is_set() for r in rows):
                    break
                rows[tag].events.put((tag, text))
            for r in rows:
                r.error = error
                r.finish()

        t = threading.Thread(target=run)
        for r in rows:
            r.batch, r.thread = rows, t
        t.start()

    return submit


def test_tagged_pieces_arrive_in_order_and_the_thread_is_gone_after():
    events, rows = _pair()
    pieces = [(0, "Hel"), (1, "Bon"), (0, "lo"), (1, "jour")]
    stream = Stream(rows, events, _worker(pieces), tagged=True)
    got = list(stream)
    assert got == pieces
    assert not stream.running and not rows[0].thread.is_alive()


def test_one_request_yields_plain_text():
    events = queue.SimpleQueue()
    r = Request(RequestSpec(None, None, GenerationSettings()), events)
    assert "".join(Stream([r], events, _worker([(0, "a"), (0, "b")]))) == "ab"


def test_closing_the_iterator_stops_every_request():
    events, rows = _pair()
    stream = Stream(rows, events, _worker([(0, "x")] * 1000, stop_after=1), tagged=True)
    it = iter(stream)
    next(it)
    it.close()  # what Gradio does on Stop
    assert all(r.stop_event.is_set() and r.finished.is_set() for r in rows)
    assert not rows[0].thread.is_alive()


def test_an_error_of_the_batch_reaches_the_consumer():
    events, rows = _pair()
    with pytest.raises(RuntimeError, match="boom"):
        list(Stream(rows, events, _worker([(0, "a")], error=RuntimeError("boom")), tagged=True))


def test_stop_before_start_starts_nothing():
    events, rows = _pair()
    submitted = []
    stream = Stream(rows, events, submitted.append)
    stream.stop()
    assert submitted == [] and all(r.stop_event.is_set() for r in rows)
