"""Stop and Clear, every time, in a real browser driven by keyboard and mouse, and through the API.

Each round: Clear (mouse), a new message (typed, Enter), the answer must come; a feature card is drawn
(mouse) while it streams; Stop (mouse) at a random point. The inspector follows every answer, so most Stops
and Sends land while it is still reading the message before. The page records, with its own clock, when
Stop was clicked and every change of the answer's length (a MutationObserver), so "Stop ends the text
within a second" is measured on the page, not by polling: after the click's first second, at most one
piece (the one already on its way) may still arrive. One tab for 30 rounds; then three tabs, all streaming
at once, 10 rounds each. The step-exact check of a cancel is tests/integration/test_reliability.py.
"""

import random
import time

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from tests.helpers import browser_page


NAMES = ["Ada", "Bram", "Cleo", "Dov", "Esme", "Finn", "Gus", "Hana", "Ivo", "Juno"]
LINK = "?tokens=400&temp=0"  # greedy and long: unstopped, each answer runs far longer than a round
ROUNDS, TAB_ROUNDS = 30, 10
SECOND_MS = 1000
PIECE_CHARS = 40  # one streamed piece: a token or a few, never a sentence
WATCH = """() => {
    if (window.watch) return;
    const chat = document.querySelector('#steered-chat');
    const answer = () => {
        const answers = chat.querySelectorAll('.bot-row .message-content');
        return answers.length ? answers[answers.length - 1].innerText.length : 0;
    };
    window.watch = {changes: [], stops: [], length: answer};
    let last = answer();
    new MutationObserver(() => {
        const n = answer();
        if (n !== last) { window.watch.changes.push([performance.now(), n]); last = n; }
    }).observe(chat, {subtree: true, childList: true, characterData: true});
    document.addEventListener('click', e => { if (e.target.closest('#stop')) window.watch.stops.push(performance.now()); }, true);
}"""
SETTLED = """() => {
    // Quiet for long enough that a stream still running would have shown a piece: 2.5 times the gap between
    // the pieces before Stop (at least half a second), and past the first second after the click.
    const w = window.watch, now = performance.now(), stop = w.stops[w.stops.length - 1];
    const times = w.changes.filter(c => c[0] <= stop && c[0] > stop - 5000).map(c => c[0]);
    const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    const quiet = Math.max(500, 2.5 * (gaps.length ? gaps[Math.floor(gaps.length / 2)] : 500));
    const last = w.changes.length ? w.changes[w.changes.length - 1][0] : 0;
    return now - stop > 1000 + quiet && now - last > quiet;
}"""


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _answer_length(page) -> int:
    return page.evaluate("window.watch.length()")


def _user_turns(page) -> int:
    return page.locator("#steered-chat .user-row").count()


def open_tab(page, url: str) -> None:
    page.goto(url + LINK)
    expect(page.locator("#strength-0 input[type=number]")).to_be_visible(timeout=120_000)
    page.evaluate(WATCH)


def clear_and_send(page, message: str) -> None:
    """Clear with the mouse, then type the message and press Enter, as a person does."""
    page.click("#clear")
    _wait_for(lambda: _user_turns(page) == 0, 30, "Clear to empty the chat")
    page.click("#message textarea")
    page.keyboard.type(message)
    page.keyboard.press("Enter")


def wait_answered(page, what: str) -> None:
    """The new message is answered: its text arrives, and the chat holds it alone (Clear was not undone)."""
    _wait_for(lambda: _answer_length(page) > 0, 120, f"{what}: the answer to start")
    assert _user_turns(page) == 1, f"{what}: the chat holds {_user_turns(page)} messages after Clear and one Send"


def stop_and_measure(page, what: str) -> None:
    """Click Stop; once the answer has been quiet for a second, check it grew by at most one piece after the
    click's first second."""
    page.click("#stop")
    _wait_for(lambda: page.evaluate(SETTLED), 60, f"{what}: the answer to stop changing")
    stop, changes = page.evaluate("[window.watch.stops.at(-1), window.watch.changes]")
    before = [n for t, n in changes if t <= stop + SECOND_MS]
    late = [n for t, n in changes if t > stop + SECOND_MS]
    grew = [n for n in late if n > (before[-1] if before else 0)]
    assert len(grew) <= 1, f"{what}: the answer grew {len(grew)} times more than a second after Stop: {late}"
    if grew:
        assert grew[0] - (before[-1] if before else 0) <= PIECE_CHARS, f"{what}: {grew[0] - before[-1]} characters after Stop"


@pytest.fixture(scope="module")
def page():
    with browser_page() as page:
        yield page


@pytest.mark.browser
def test_stop_clear_send_stop_thirty_times_in_one_tab_with_the_inspector_following(page, app_server):
    rng = random.Random(11)
    open_tab(page, app_server)
    for i in range(ROUNDS):
        name = NAMES[i % len(NAMES)]
        clear_and_send(page, f"Write a long story about a sailor named {name} and the sea.")
        wait_answered(page, f"round {i}")
        page.click("#card-0")  # a feature card is drawn while the answer streams
        time.sleep(rng.uniform(0.0, 0.5))
        stop_and_measure(page, f"round {i}")
    expect(page.locator("#panel-note")).to_contain_text("over the words of your message", timeout=120_000)
    expect(page.locator("#token-view")).to_contain_text(NAMES[(ROUNDS - 1) % len(NAMES)], timeout=120_000)
    expect(page.locator("#feature-card-chat")).to_contain_text("Feature 3")


@pytest.mark.browser
def test_stop_clear_send_stop_in_three_tabs_streaming_at_once(page, app_server):
    rng = random.Random(12)
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1200})  # one Playwright per module
    try:
        tabs = [context.new_page() for _ in range(3)]  # tabs of one browser window: they share its connections
        for tab in tabs:
            open_tab(tab, app_server)
        for i in range(TAB_ROUNDS):
            for t, tab in enumerate(tabs):
                tab.bring_to_front()
                clear_and_send(tab, f"Write a long story about a sailor named {NAMES[(i + t) % len(NAMES)]} and the sea.")
            for t, tab in enumerate(tabs):
                wait_answered(tab, f"round {i}, tab {t}")
            for t, tab in enumerate(tabs):
                tab.bring_to_front()
                time.sleep(rng.uniform(0.0, 0.4))
                stop_and_measure(tab, f"round {i}, tab {t}")
    finally:
        context.close()


def test_an_api_cancel_returns_once_the_generation_has_ended(app_server):
    client, rng = Client(app_server, verbose=False), random.Random(5)
    for i in range(6):
        job = client.submit("Write a long story about a sailor and the sea.", None, None, "own", None, 300, 0.0, api_name="/chat")
        chunks = rng.randint(1, 8)
        _wait_for(lambda job=job, chunks=chunks: len(job.outputs()) >= chunks or job.done(), 120, f"round {i}: {chunks} chunks")
        assert not job.done(), f"round {i}: the answer ended before the cancel"
        job.cancel()
        assert client.predict(api_name="/status")["active_generations"] == 0, f"round {i}: still generating"
    answer = client.predict("Hi!", None, None, "own", None, 6, 0.0, api_name="/chat")
    assert isinstance(answer, str) and answer.strip()
