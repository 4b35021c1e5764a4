"""Stop, every time: in a real browser at random points mid-answer, and through the API (gradio_client).

The step-exact check (a cancel landing mid-step drops that step's token and runs no step after) is
tests/integration/test_reliability.py; these check the same through the launched app, on states:
the page's text stops growing once its cancel is answered and the server has nothing generating
(/status), /status shows nothing generating once job.cancel() returns, and the next message is answered.
Where Stop lands is random in the answer's length, not in time, so it does not depend on the machine's speed.
"""

import random
import time

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from tests.helpers import browser_page

STORY = "Write a long story about a sailor and the sea."
ROUNDS = 8


LAST_ANSWER = """() => {
    const answers = document.querySelectorAll('#steered-chat .bot-row .message-content');
    return answers.length ? answers[answers.length - 1].innerText : '';
}"""


def _answer(page) -> str:
    """The last answer's text (not the chatbot's labels and buttons), read in one step as the chat re-renders."""
    return page.evaluate(LAST_ANSWER)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def page():
    with browser_page() as page:
        yield page


def _settled(page, client) -> str:
    """The answer once the page has drawn what the server sent before it went idle: the same text before and
    after a round trip to the server (/status answers after every earlier message on the way)."""
    while True:
        before = _answer(page)
        assert client.predict(api_name="/status")["active_generations"] == 0
        if _answer(page) == before:
            return before


@pytest.mark.browser
def test_stop_at_random_points_ends_the_answer_every_time_and_the_next_message_is_answered(page, app_server):
    rng, client = random.Random(11), Client(app_server, verbose=False)
    page.goto(f"{app_server}?tokens=400&temp=0")  # greedy and long: unstopped, each answer runs for many seconds
    expect(page.locator("#message textarea")).to_be_visible(timeout=60000)
    for i in range(ROUNDS + 1):
        page.click("#clear")
        _wait_for(lambda: _answer(page) == "", 30, "Clear to empty the chat")
        page.fill("#message textarea", STORY)
        page.click("#send")
        _wait_for(lambda: _answer(page) != "", 90, f"round {i}: the answer to start")  # the message before was stopped
        if i == ROUNDS:
            break
        length = rng.randint(1, 120)  # characters of answer before Stop
        _wait_for(lambda: len(_answer(page)) >= length, 120, f"round {i}: {length} characters of answer")
        with page.expect_response(lambda r: r.url.endswith("/cancel"), timeout=30000) as cancel:
            page.click("#stop")
        assert cancel.value.ok, f"round {i}: the cancel failed"
        _wait_for(lambda: client.predict(api_name="/status")["active_generations"] == 0, 60,
                  f"round {i}: the server to end the generation")
        stopped = _settled(page, client)
        assert _settled(page, client) == stopped, f"round {i}: the answer grew after Stop"
    page.click("#stop")


def test_an_api_cancel_returns_once_the_generation_has_ended(app_server):
    client, rng = Client(app_server, verbose=False), random.Random(5)
    for i in range(6):
        job = client.submit(STORY, None, None, "own", None, 300, 0.0, api_name="/chat")
        chunks = rng.randint(1, 8)
        _wait_for(lambda job=job, chunks=chunks: len(job.outputs()) >= chunks or job.done(), 120, f"round {i}: {chunks} chunks")
        assert not job.done(), f"round {i}: the answer ended before the cancel"
        job.cancel()
        assert client.predict(api_name="/status")["active_generations"] == 0, f"round {i}: still generating"
    answer = client.predict("Hi!", None, None, "own", None, 6, 0.0, api_name="/chat")
    assert isinstance(answer, str) and answer.strip()
