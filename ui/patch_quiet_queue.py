"""Gradio patch: an idle queue is idle.

Gradio's queue looks for new events every 1 ms and for progress every 10 ms even with no visitor (5% of a
core, nearly all of it this polling: py-spy, strace). Two seconds after its last event this app's queue
looks every 50 and 500 ms instead (0.2-0.6% of a core), so only the first event after a quiet spell waits,
at most 50 ms, to start. `apply` changes the class of one app's queue object only (a subclass whose two
polling intervals are properties), so other apps in the process keep Gradio's own. Checked against
Gradio 6 (`check` fails, and tests/unit/ui/test_gradio_patches.py with it, when the queue changes shape).
"""

from __future__ import annotations

import inspect
import time

import gradio as gr
from gradio.queueing import Queue

GRADIO_MAJOR = "6"
BUSY_S = 2.0
INTERVALS = {"sleep_when_free": (0.001, 0.05), "progress_update_sleep_when_free": (0.01, 0.5)}
"""Each polling interval: (while busy, once idle)."""


def check() -> None:
    """Raise if this Gradio is not the one the patch was written for (major version, and the queue's shape)."""
    if gr.__version__.split(".")[0] != GRADIO_MAJOR:
        raise RuntimeError(f"ui/patch_quiet_queue.py was written for Gradio {GRADIO_MAJOR}.x, found {gr.__version__}")
    source = inspect.getsource(Queue)
    missing = [f"self.{name}" for name in (*INTERVALS, "active_jobs") if f"self.{name}" not in source]
    if missing or not hasattr(Queue, "__len__"):
        raise RuntimeError(f"Gradio {gr.__version__}'s queue no longer has {missing or ['__len__']}: "
                           "ui/patch_quiet_queue.py needs a look")


def quiet(queue: Queue) -> Queue:
    """`queue`, polling slowly once idle for `BUSY_S`."""
    check()
    last_busy = [float("-inf")]

    def busy(q) -> bool:
        now = time.monotonic()
        if len(q) or any(job is not None for job in q.active_jobs):
            last_busy[0] = now
        return now - last_busy[0] < BUSY_S

    def interval(name: str) -> property:
        fast, slow = INTERVALS[name]
        return property(lambda q: fast if busy(q) else slow, lambda q, value: None)

    queue.__class__ = type("QuietQueue", (type(queue),), {name: interval(name) for name in INTERVALS})
    return queue


def apply(demo: gr.Blocks) -> None:
    """Quiet the queue of `demo` (after `demo.queue(...)`)."""
    quiet(demo._queue)
