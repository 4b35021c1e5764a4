"""`Admission`: the bounded waiting line and its estimate, ceil(median(durations) / workers), at least 1 s."""

from __future__ import annotations

import threading

import pytest

from steering.service.admission import Admission, Full
from steering.service.limits import UserError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_busy_message_says_when_to_come_back():
    a = Admission(3, workers=2, typical_s=9.0)
    assert a.busy_message(3) == "The app is busy: 3 chats are waiting. Try again in about 5 s."  # ceil(9 / 2)
    a.record(20.0)
    assert a.busy_message(7) == "The app is busy: 7 chats are waiting. Try again in about 10 s."


def test_the_estimate_follows_the_median_of_recent_durations():
    a = Admission(1, workers=4, kept=5)
    for seconds in (2.0, 30.0, 10.0, 11.0, 12.0, 13.0):  # the first falls out of the last 5
        a.record(seconds)
    assert a.retry_after_s() == 3  # median(30, 10, 11, 12, 13) = 12, over 4 workers
    a.record(13.5), a.record(14.0)
    assert a.retry_after_s() == 4  # median(11, 12, 13, 13.5, 14) = 13 -> 3.25, rounded up
    quick = Admission(1, workers=8)
    quick.record(0.2)
    assert quick.retry_after_s() == 1  # never "try again in 0 s"


def test_places_are_held_and_freed_once():
    clock = Clock()
    a = Admission(2, workers=1, clock=clock)
    first, second = a.enter(), a.enter()
    with pytest.raises(Full, match="The server is busy: 2 requests are in progress, its limit. Try again in about 10 s.") as info:
        a.enter()
    assert info.value.retry_after_s == 10 and isinstance(info.value, UserError)
    clock.now += 6.0
    first.leave()
    first.leave()  # a stream's end and its response's end both free it: once
    assert a.in_flight == 1 and list(a.durations) == [6.0]
    third = a.enter()
    second.leave(), third.leave()
    assert a.in_flight == 0 and len(a.durations) == 3


def test_many_threads_never_pass_the_limit():
    a = Admission(5)
    held, refused, lock = [], [], threading.Lock()
    barrier = threading.Barrier(20)

    def visitor():
        barrier.wait()
        try:
            place = a.enter()
        except Full:
            with lock:
                refused.append(1)
            return
        with lock:
            held.append(place)

    threads = [threading.Thread(target=visitor) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 5 and len(refused) == 15 and a.in_flight == 5


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "3"])
def test_a_bad_limit_is_refused(limit):
    with pytest.raises(ValueError, match="admission limit"):
        Admission(limit)
