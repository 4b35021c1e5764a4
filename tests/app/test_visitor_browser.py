"""A visitor's path through the shipped demo in a real browser, by keyboard and mouse: Enter sends,
adding a feature keeps every slider as it was left, feature cards open from the inspector and from a
slider, and a phrase becomes a slider."""

import re

import pytest
from playwright.sync_api import expect

from steering.config import load_config
from steering.inspection.cards import load_feature_cards
from tests.helpers import ROOT, browser_page, start_app, stop_app

DEFAULTS = load_config(ROOT / "demo.yaml").features
FIRST = DEFAULTS[0]  # the feature that is on at start
N = len(DEFAULTS)  # the first free slot
EXTRA = next(i for i in (14200, 16221, 2396) if i not in {f.index for f in DEFAULTS})  # a dog / cat feature to add


@pytest.fixture(scope="module")
def shipped_app(tmp_path_factory):
    """The app on the shipped demo.yaml (its SAE ships labels, densities and cards)."""
    folder = tmp_path_factory.mktemp("shipped")
    demo = folder / "demo.yaml"
    demo.write_text((ROOT / "demo.yaml").read_text().replace("./saes/", f"{ROOT}/saes/").replace(
        "vectors: steering_vectors.pt", f"vectors: {ROOT}/steering_vectors.pt"))
    proc, url, _ = start_app(demo)
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def page(shipped_app):
    with browser_page(1500, 1400) as page:
        page.goto(f"{shipped_app}?tokens=12&temp=0")
        expect(page.locator("#strength-0 input[type=number]")).to_have_value(f"{FIRST.strength:g}", timeout=120_000)
        yield page


def _number(page, elem_id):
    return page.locator(f"#{elem_id} input[type=number]")


def test_adding_a_feature_keeps_every_slider_and_box_as_left(page):
    first = _number(page, "strength-0")
    first.fill("77")
    first.press("Enter")
    page.locator("#on-1 input[type=checkbox]").check()
    picked = _number(page, "picked-feature")
    picked.fill(str(EXTRA))
    page.click("#steer-with")
    expect(page.locator(f"#strength-{N}")).to_be_visible(timeout=60_000)
    expect(page.locator(f"#strength-{N}")).to_contain_text(str(EXTRA))
    expect(first).to_have_value("77")
    expect(page.locator("#on-1 input[type=checkbox]")).to_be_checked()
    expect(page.locator("#on-2 input[type=checkbox]")).not_to_be_checked()


def test_enter_sends_and_shift_enter_starts_a_new_line(page):
    box = page.locator("#message textarea")
    box.click()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.locator("#steered-chat")).not_to_contain_text("first line")
    box.fill("")
    box.click()
    page.keyboard.type("Tell me about dogs")
    page.keyboard.press("Enter")
    expect(page.locator("#steered-chat")).to_contain_text("Tell me about dogs", timeout=60_000)
    expect(box).to_have_value("")
    expect(page.locator("#panel-note")).to_contain_text("over the words of your message", timeout=120_000)


def test_a_feature_card_opens_from_the_inspector_table_and_from_a_slider(page):
    table = page.locator("#top-features")
    expect(table).to_contain_text("dog", timeout=120_000)
    first_index = table.locator("[role=gridcell]").first
    index = first_index.inner_text().strip()
    first_index.click()
    card = page.locator("#feature-card-chat")
    expect(card).to_contain_text(f"Feature {index}", timeout=60_000)
    expect(card).to_contain_text("held-out tokens")
    expect(card).to_contain_text("Top-activating contexts")
    expect(page.locator("#feature-histogram-chat")).to_be_visible()

    page.click("#card-0")
    expect(card).to_contain_text(f"Feature {FIRST.index}", timeout=60_000)
    label = load_feature_cards(ROOT / "saes" / "smollm2-135m-instruct" / "layer_15").label(FIRST.index)
    expect(card).to_contain_text(label.split(" / ")[0])


def test_a_token_click_shows_its_own_features(page):
    page.locator("#token-view").get_by_text("dogs").first.click()
    tokens = page.locator("#token-features")
    expect(tokens).to_be_visible(timeout=30_000)
    expect(tokens).to_contain_text("dog")


def test_a_phrase_becomes_a_slider_that_is_on(page):
    page.locator("#phrase textarea").fill("the ocean")
    page.click("#phrase-go")
    slot = page.locator(f"#strength-{N + 1}")  # after the defaults and the feature added above
    expect(slot).to_be_visible(timeout=120_000)
    expect(page.locator(f"#on-{N + 1} input[type=checkbox]")).to_be_checked()
    value = float(_number(page, f"strength-{N + 1}").input_value())
    assert 20 <= value <= 60, value
    assert re.search(r"ocean|sea|marine|water", slot.inner_text().lower()), slot.inner_text()


def test_a_phrase_becomes_a_concept_vector_slider_that_a_share_link_keeps(page, shipped_app):
    slot = N + 2  # after the defaults, the feature added and the phrase's feature above
    box = page.locator("#phrase textarea")
    box.click()
    box.press("Control+a")
    page.keyboard.type("dogs")
    page.click("#concept-vector-go")
    row = page.locator(f"#strength-{slot}")
    expect(row).to_contain_text("concept: dogs", timeout=120_000)
    expect(page.get_by_text("closest features: #14200").first).to_be_visible()  # what the vector is made of
    expect(page.locator(f"#on-{slot} input[type=checkbox]")).to_be_checked()
    strength = float(_number(page, f"strength-{slot}").input_value())
    assert 30 <= strength <= 40, strength  # 0.2 of layer 15's typical norm (about 177)
    page.click("#share")
    page.wait_for_function("document.querySelector('#share-link textarea').value.includes('cv=')", timeout=30_000)
    link = page.locator("#share-link textarea").input_value()
    assert f"cv=L15:dogs={strength:g}" in link, link
    other = page.context.browser.new_context().new_page()  # the link, opened by someone else, shows the same slider
    try:
        other.goto(link)
        expect(other.locator(f"#strength-{slot}")).to_contain_text("concept: dogs", timeout=120_000)
        expect(_number(other, f"strength-{slot}")).to_have_value(f"{strength:g}")
    finally:
        other.context.close()
