"""Gradio patch: a full queue tells a visitor when to come back.

Gradio answers a full queue (`demo.queue(max_size=...)`) with a fixed text that names no time: gradio_client
raises "Queue is full! Please try again." and the page shows "This application is currently busy. Please try
again.", both written in the clients, whatever the server sends. A queue failing validation is the one answer both
clients show in the server's words, so when the queue is full `Queue.push` answers as a validator would, with
`message(waiting)` ("The app is busy: 5 chats are waiting. Try again in about 12 s."): gradio_client raises
`ValidationError` with it, and the page shows it at the event's first input (the message box for a chat). It
is answered at once, before anything joins the queue. Checked on Gradio 6 (`Queue.push(body, request, username)`
returning `(ok, detail, state)`; tests/app/test_busy.py).
"""

from __future__ import annotations

from collections.abc import Callable

import gradio
from gradio.queueing import Queue

CHECKED_ON = "6."


def busy_queue(message: Callable[[int], str]) -> None:
    """Patch `Queue.push` (once per process: this process serves one queue)."""
    if not gradio.__version__.startswith(CHECKED_ON):
        raise RuntimeError(f"ui/patch_busy_queue.py was checked on Gradio {CHECKED_ON}x, not {gradio.__version__}: "
                           "check Queue.push and tests/app/test_busy.py, then update CHECKED_ON")
    push = Queue.push
    if getattr(push, "busy_queue", False):
        return

    async def push_or_say_when(self, body, *args, **kwargs):
        if self.max_size is not None and len(self) >= self.max_size:
            said = {"__type__": "validate", "is_valid": False, "message": message(len(self)), "parameter_name": "queue"}
            return False, [said], "validator_error"
        return await push(self, body, *args, **kwargs)

    push_or_say_when.busy_queue = True
    Queue.push = push_or_say_when
