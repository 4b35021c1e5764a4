"""The app in a real browser: Debian Chromium driven by Playwright (it cannot download browsers here)."""

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers import ROOT, browser_page

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
    expect(page.locator("#mode input[value=clamp]")).to_be_checked()
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
    assert "L15:3=40" in value and "L15:4=25" in value and "mode=clamp" in value and "compare=1" in value
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


def test_bad_share_link_shows_a_warning_and_keeps_defaults(page, app_server):
    page.goto(f"{app_server}?s=L15:3=abc&mode=sideways")
    expect(page.get_by_text("was ignored").first).to_be_visible(timeout=60000)
    expect(_number(page, "strength-0")).to_have_value("0")
    expect(page.locator("#mode input[value=own]")).to_be_checked()
    page.screenshot(path=str(ARTIFACTS / "browser-bad-link.png"))
