"""steering/generate/batching.py: which requests share a batch, and on which thread each batch runs."""

import queue
import threading
import time

import pytest

from steering.config import GenerationSettings
from steering.generate.batching import Batcher
from steering.generate.decode import Request, RequestSpec


def _request(tag=0):
    return Request(RequestSpec(input_ids=None, plan=None, settings=GenerationSettings(), tag=tag), queue.SimpleQueue())


class Recorder:
    """A `run` callable that records each batch it is handed and the thread it runs on."""

    def __init__(self, hold_s=0.0):
        self.batches, self.threads, self.hold_s = [], [], hold_s
        self.done = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, rows):
        time.sleep(self.hold_s)
        with self.lock:
            self.batches.append([r.spec.tag for r in rows])
            self.threads.append(threading.current_thread())

    def wait_for(self, n, timeout=10):
        deadline = time.time() + timeout
        while len(self.batches) < n and time.time() < deadline:
            time.sleep(0.005)
        return sorted(self.batches)


def test_without_a_window_each_group_runs_at_once_on_its_own_thread():
    rec = Recorder()
    b = Batcher(rec)
    assert not b.batching
    b.submit([_request(0)])
    b.submit([_request(1), _request(2)])
    assert rec.wait_for(2) == [[0], [1, 2]]
    assert len(set(rec.threads)) == 2 and threading.current_thread() not in rec.threads
    assert sorted(b.batch_sizes) == [1, 2]
    assert {t.name for t in rec.threads} == {"steering-generate"}


def test_groups_arriving_within_the_window_share_one_batch_up_to_max_batch():
    rec = Recorder()
    b = Batcher(rec, window_s=0.3, max_batch=3)
    for i in range(4):  # the 4th overflows max_batch and starts the next batch
        b.submit([_request(i)])
    assert rec.wait_for(2) == [[0, 1, 2], [3]]
    assert list(b.batch_sizes) == [3, 1]
    assert {t.name for t in rec.threads} == {"steering-batch"}


def test_a_group_is_never_split_across_batches():
    rec = Recorder()
    b = Batcher(rec, window_s=0.3, max_batch=3)
    b.submit([_request(0), _request(1)])
    b.submit([_request(2), _request(3)])  # does not fit beside the first pair: a batch of its own
    assert rec.wait_for(2) == [[0, 1], [2, 3]]


def test_a_full_batch_starts_without_waiting_out_the_window():
    rec = Recorder()
    b = Batcher(rec, window_s=30, max_batch=2)
    b.submit([_request(0), _request(1)])
    assert rec.wait_for(1, timeout=10) == [[0, 1]]  # well before the 30 s window would have run out


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, "max_batch must be at least 1, got 0"),
    ({"window_s": -1.0}, "window_s must be 0 or more seconds, got -1.0"),
    ({"window_s": float("nan")}, "window_s must be 0 or more seconds, got nan"),
])
def test_bad_options_are_refused_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Batcher(lambda rows: None, **kwargs)
