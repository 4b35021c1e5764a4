"""A full waiting line (STEERING_MAX_QUEUE) turns a new chat away at once, with when to come back, on the API and
in the page, and never hangs it; once the line moves, chats are answered again. The app runs one chat at a time
here (STEERING_CONCURRENCY=1) with one place in the line (STEERING_MAX_QUEUE=1)."""

from __future__ import annotations

import re
import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import ValidationError

from tests.conftest import write_test_demo
from tests.helpers import browser_page, start_app, stop_app

BUSY = re.compile(r"The app is busy: \d+ chats are waiting\. Try again in about (\d+) s\.")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    demo = write_test_demo(tmp_path_factory.mktemp("busy"))
    proc, url, log = start_app(demo, {"STEERING_CONCURRENCY": "1", "STEERING_MAX_QUEUE": "1"}, timeout_s=900)
    yield url, log
    stop_app(proc)


def long_chat(client: Client):
    return client.submit("Tell me a very long story about the sea.", None, None, "own", None, 400, 0.0, api_name="/chat")


def wait_for(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_a_full_line_turns_chats_away_at_once_and_moves_on(app):
    url, log = app
    running, waiting, late = (Client(url, verbose=False) for _ in range(3))
    first = long_chat(running)
    wait_for(lambda: first.outputs(), "the first chat streams")
    second = long_chat(waiting)
    wait_for(lambda: second.status().code.name == "IN_QUEUE", "the second chat waits in the line")

    asked = time.time()
    with pytest.raises(ValidationError) as refused:
        late.predict("Hello?", None, None, "own", None, 8, 0.0, api_name="/chat")
    assert time.time() - asked < 30, "refused at once, not after waiting"
    match = BUSY.search(str(refused.value))
    assert match and int(match.group(1)) >= 1, str(refused.value)

    with browser_page() as page:  # the page's own Send says the same, next to the message box
        page.goto(url)
        page.locator("#message textarea").fill("Hello from the page?")
        page.keyboard.press("Enter")
        page.get_by_text(BUSY).first.wait_for(timeout=60_000)
        assert page.locator("#message textarea").input_value() == "Hello from the page?"  # nothing lost

    first.cancel(), second.cancel()
    wait_for(lambda: running.predict(api_name="/status")["active_generations"] == 0, "the line empties", 60)
    assert late.predict("Hello?", None, None, "own", None, 4, 0.0, api_name="/chat").strip()
    assert "Traceback" not in log.read_text()
