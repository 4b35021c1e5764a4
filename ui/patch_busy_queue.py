"""Gradio patch: a full queue tells a visitor when to come back.

Gradio answers a full queue (`demo.queue(max_size=...)`) with a fixed text that names no time: gradio_client
raises "Queue is full! Please try again." and the page shows "This application is currently busy. Please try
again.", both written in the clients, whatever the server sends. A queue failing validation is the one answer both
clients show in the server's words, so when the queue is full `push` answers as a validator would, with
`message(waiting)` ("The app is busy: 5 chats are waiting. Try again in about 12 s."): gradio_client raises
`ValidationError` with it, and the page shows it at the event's first input (the message box for a chat). It
is answered at once, before anything joins the queue. Only this demo's queue changes (its class becomes a
subclass). Checked on Gradio 6 (`Queue.push(body, request, username)` returning `(ok, detail, state)`;
tests/app/test_busy.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import gradio as gr
from gradio.queueing import Queue

GRADIO_MAJOR = "6"


def check() -> None:
    """Raise if this Gradio is not the one the patch was written for (major version, and `push`'s shape)."""
    if gr.__version__.split(".")[0] != GRADIO_MAJOR:
        raise RuntimeError(f"ui/patch_busy_queue.py was written for Gradio {GRADIO_MAJOR}.x, found {gr.__version__}")
    params = list(inspect.signature(Queue.push).parameters)
    if params[:2] != ["self", "body"] or "validator_error" not in inspect.getsource(Queue):
        raise RuntimeError(f"Gradio {gr.__version__}'s Queue.push is no longer (self, body, ...) answered as a "
                           "validator error: ui/patch_busy_queue.py needs a look")


def apply(demo: gr.Blocks, message: Callable[[int], str]) -> None:
    """`demo`'s queue (after `demo.queue(...)`) answers a push past its `max_size` with `message(waiting)`."""
    check()
    queue = demo._queue

    async def push(self, body, *args, **kwargs):
        if self.max_size is not None and len(self) >= self.max_size:
            said = {"__type__": "validate", "is_valid": False, "message": message(len(self)), "parameter_name": "queue"}
            return False, [said], "validator_error"
        return await super(busy, self).push(body, *args, **kwargs)

    busy = type("BusyQueue", (type(queue),), {"push": push})
    queue.__class__ = busy
