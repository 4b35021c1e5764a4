"""The app in a real browser: Debian Chromium driven by Playwright (it cannot download browsers here)."""

import os
import time
from pathlib import Path

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from steering.config import MODES
from tests.helpers import ROOT, browser_page

ASK = "Tell me about the sea."

ARTIFACTS = Path(os.environ.get("STEERING_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def page():
    with browser_page() as page:
        yield page


def _number(page, elem_id):
    return page.locator(f"#{elem_id} input[type=number]")


def test_share_link_sets_the_controls_and_a_chat_streams(page, app_server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{app_server}?s=L15:3=40&mode=clamp&compare=1&temp=0")
    expect(_number(page, "strength-0")).to_have_value("40", timeout=60000)
    expect(page.locator("#mode-0 input")).to_have_value("clamp")  # an older link's mode for every feature
    expect(page.locator("#mode-1 input")).to_have_value("clamp")
    expect(page.locator("#compare input[type=checkbox]")).to_be_checked()
    expect(page.locator("#on-1 input[type=checkbox]")).to_be_checked()

    slider = _number(page, "strength-1")  # move the second feature's slider
    slider.fill("25")
    slider.press("Enter")
    expect(slider).to_have_value("25")

    page.fill("#message textarea", "Tell me about the sea.")
    page.click("#send")
    steered = page.locator("#steered-chat")
    seen = set()
    deadline = time.time() + 90
    while time.time() < deadline:
        text = steered.inner_text()
        if "Tell me about the sea." in text:
            seen.add(text)
        if len(seen) >= 3:
            break
        time.sleep(0.05)
    assert len(seen) >= 3, f"expected the answer to arrive in several steps, saw {len(seen)} states"
    plain = page.locator("#plain-chat")
    expect(plain).to_contain_text("Tell me about the sea.")
    assert (plain.bounding_box() or {}).get("height", 0) > 100  # the unsteered answer is shown beside the steered one
    expect(page.locator("#panel-note")).to_contain_text("Layer 15, unsteered: the strongest features over the words of your message", timeout=90000)
    expect(page.locator("#top-features")).to_contain_text("@ layer 15")  # feature rows with their labels

    page.click("#share")
    link = page.locator("#share-link textarea")
    page.wait_for_function("document.querySelector('#share-link textarea').value.includes('?')", timeout=30000)
    value = link.input_value()
    assert "L15:3=40" in value and "L15:4=25" in value and "compare=1" in value
    assert "m=L15:3=clamp" in value and "L15:4=clamp" not in value  # L15:4 is configured clamp
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


def test_bad_share_link_names_every_ignored_part_and_keeps_defaults(page, app_server):
    page.goto(f"{app_server}?s=L15:3=abc,L15:99999999=50&mode=sideways&temp=%00%ff")
    expect(page.get_by_text("was ignored").first).to_be_visible(timeout=60000)
    for says in ("the strength of L15:3 must be a finite number or off, got 'abc'",
                 "feature 99999999 does not exist: this SAE has features 0 to 255",
                 "the mode must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap or own",
                 "temp must be a finite number from 0 to 2 (0 is greedy), got '\\x00\ufffd'"):
        expect(page.get_by_text(says)).to_be_visible()
    expect(page.get_by_text("could not convert")).to_have_count(0)
    expect(_number(page, "strength-0")).to_have_value("0")
    expect(page.locator("#mode-0 input")).to_have_value("add")
    page.screenshot(path=str(ARTIFACTS / "browser-bad-link.png"))


def _answer(page) -> str:
    return page.evaluate("""() => {
        const answers = document.querySelectorAll('#steered-chat .bot-row .message-content');
        return answers.length ? answers[answers.length - 1].innerText : '';
    }""")


def _choose(page, slot: int, mode: str) -> None:
    """Pick `mode` in a feature's mode list with the mouse."""
    page.click(f"#mode-{slot} input")
    page.locator(f"#mode-{slot} li[role=option][aria-label='{mode}']").click()
    expect(page.locator(f"#mode-{slot} input")).to_have_value(mode)


@pytest.fixture(scope="module")
def api(app_server):
    """The named API's greedy answer with feature 3 at 30 in a given mode, asked once per mode for the module."""
    client, answers = Client(app_server, verbose=False), {}

    def answer(chosen):
        if chosen not in answers:
            answers[chosen] = client.predict(ASK, None, {"L15:3": 30.0}, "own", None, 12, 0.0, None, None, None,
                                             {"L15:3": chosen}, api_name="/chat")
        return answers[chosen]

    return answer


@pytest.mark.parametrize("mode", MODES)
def test_a_mode_chosen_for_a_feature_takes_effect(page, app_server, api, mode):
    """The answer after choosing `mode` for a feature (with the mouse, starting from another mode) is the API's
    answer with that feature's own mode, and differs from the one with the mode it had before."""
    expected = api(mode)
    # add and clamp move a random direction's near-zero component alike: start from a mode that answers otherwise
    before = next((m for m in MODES if m != mode and api(m) != expected), None)
    assert before is not None, f"every mode answers as {mode} does here: the check would show nothing"
    page.goto(f"{app_server}?s=L15:3=30&m=L15:3={before}&tokens=12&temp=0")
    expect(page.locator("#mode-0 input")).to_have_value(before, timeout=60000)
    _choose(page, 0, mode)
    page.click("#message textarea")
    page.keyboard.type(ASK)
    page.keyboard.press("Enter")
    expect(page.locator("#panel-note")).to_contain_text("over the words of your message", timeout=120_000)  # the answer has ended
    assert " ".join(_answer(page).split()) == " ".join(expected.split())
