"""The three Gradio patches of ui/: each checks that Gradio still has the shape it patches, does what it says on
one app only, and fails here when Gradio changes under it."""

from __future__ import annotations

import asyncio

import gradio as gr
import pytest
from gradio.queueing import Queue

from ui import patch_api_arguments, patch_busy_queue, patch_quiet_queue


def _two_apps():
    """Two apps with one named endpoint each, `f(a, b=2)`."""
    apps = []
    for _ in range(2):
        with gr.Blocks() as demo:
            def f(a: int, b: int = 2) -> int:
                return a + b
            gr.api(f, api_name="f")
        apps.append((demo, f))
    return apps


def _block_fn(demo):
    return next(fn for fn in demo.fns.values() if fn.api_name == "f")


def test_this_gradio_has_the_shapes_the_patches_expect():
    patch_api_arguments.check()
    patch_quiet_queue.check()
    patch_busy_queue.check()


def test_named_endpoints_refuse_extra_values_by_name_on_the_patched_app_only():
    (mine, f), (other, _) = _two_apps()
    patch_api_arguments.apply(mine, lambda fn: fn is f)
    values = [1]
    mine.validate_inputs(_block_fn(mine), values)
    assert values == [1, 2]  # a value left out gets its default
    with pytest.raises(gr.Error, match=r"/f takes 2 argument\(s\) \(a, b\), got 3; the extra value\(s\) \[9\] would be ignored"):
        mine.validate_inputs(_block_fn(mine), [1, 2, 9])
    other.validate_inputs(_block_fn(other), [1, 2, 9])  # Gradio's own: extra values pass
    assert "validate_inputs" not in vars(other)


def test_a_changed_validate_inputs_is_caught(monkeypatch):
    monkeypatch.setattr(gr.Blocks, "validate_inputs", lambda self, block_fn, inputs, strict=True: None)
    with pytest.raises(RuntimeError, match="patch_api_arguments.py needs a look"):
        patch_api_arguments.check()


def test_the_patched_queue_polls_slowly_once_idle_and_other_queues_keep_gradio_s_pace(monkeypatch):
    (mine, _), (other, _) = _two_apps()
    mine.queue()
    other.queue()
    patch_quiet_queue.apply(mine)
    quiet, plain = mine._queue, other._queue
    assert isinstance(quiet, Queue) and type(plain) is Queue
    busy, idle = zip(*patch_quiet_queue.INTERVALS.values())
    clock = [1000.0]
    monkeypatch.setattr(patch_quiet_queue.time, "monotonic", lambda: clock[0])
    quiet.active_jobs = [["an event"], None]
    assert (quiet.sleep_when_free, quiet.progress_update_sleep_when_free) == busy
    quiet.active_jobs = [None, None]
    clock[0] += patch_quiet_queue.BUSY_S + 0.1
    assert (quiet.sleep_when_free, quiet.progress_update_sleep_when_free) == idle
    assert (plain.sleep_when_free, plain.progress_update_sleep_when_free) == (0.001, 0.01)


def test_a_queue_without_its_polling_intervals_is_caught(monkeypatch):
    monkeypatch.setattr(patch_quiet_queue.inspect, "getsource", lambda obj: "class Queue: pass")
    with pytest.raises(RuntimeError, match="patch_quiet_queue.py needs a look"):
        patch_quiet_queue.check()


def test_the_patched_full_queue_says_when_to_come_back_and_other_queues_keep_gradio_s_answer(monkeypatch):
    (mine, _), (other, _) = _two_apps()
    mine.queue(max_size=1)
    other.queue(max_size=1)
    patch_quiet_queue.apply(mine)
    patch_busy_queue.apply(mine, lambda waiting: f"busy: {waiting} waiting, come back in 7 s")
    assert isinstance(mine._queue, Queue) and type(other._queue) is Queue
    monkeypatch.setattr(Queue, "__len__", lambda self: 1)  # the line is full
    ok, detail, state = asyncio.run(mine._queue.push(None, None, None))
    assert (ok, state) == (False, "validator_error")
    assert detail == [{"__type__": "validate", "is_valid": False, "message": "busy: 1 waiting, come back in 7 s",
                       "parameter_name": "queue"}]
    assert "push" not in vars(Queue) or Queue.push.__qualname__ == "Queue.push"


def test_a_changed_queue_push_is_caught(monkeypatch):
    monkeypatch.setattr(Queue, "push", lambda self, request: None)
    with pytest.raises(RuntimeError, match="patch_busy_queue.py needs a look"):
        patch_busy_queue.check()
