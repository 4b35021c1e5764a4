"""Share links and input limits: pure functions, exact expectations."""

import pytest

from steering.concepts import NEUTRAL_TOPICS, TEMPLATES, concept_prompt_sets
from steering.config import GenerationSettings
from steering.limits import Limits, UserError, cap_generation, check_message, clamp_strength, clean_text, fit_history, prompt_lines
from steering.share import MAX_QUERY_CHARS, SteeringSetup, from_query, parse_key, to_query

DEFAULTS = SteeringSetup(strengths={"L15:3": 0.0, "L15:4": 10.0}, generation=GenerationSettings())


def _round_trip(setup):
    from urllib.parse import parse_qsl

    return from_query(dict(parse_qsl(to_query(setup, DEFAULTS))), DEFAULTS, n_layers=30, d_sae=256)


def test_link_round_trip_reproduces_the_setup():
    setup = SteeringSetup(
        strengths={"L15:3": 40.0, "L15:4": None, "L12:99": -7.5},
        mode="clamp",
        custom=((12, 99),),
        generation=GenerationSettings(max_new_tokens=100, temperature=0.0, top_p=0.5, repetition_penalty=1.3, seed=None),
        compare=True,
    )
    got, warnings = _round_trip(setup)
    assert warnings == []
    assert got == setup


def test_link_names_only_what_differs():
    assert to_query(DEFAULTS, DEFAULTS) == ""
    q = to_query(SteeringSetup(strengths={"L15:3": 40.0, "L15:4": 10.0}, generation=GenerationSettings()), DEFAULTS)
    assert q == "s=L15:3=40"


@pytest.mark.parametrize("params, name, why", [
    ({"s": "L15:3=abc"}, "s", "could not convert"),
    ({"s": "L15:3=nan"}, "s", "not a finite number"),
    ({"s": "L15:3=inf"}, "s", "not a finite number"),
    ({"s": "L99:3=1"}, "s", "layer 99 is outside this model (0..29)"),
    ({"s": "L15:999=1"}, "s", "feature 999 is outside the SAE (0..255)"),
    ({"s": "15:3=1"}, "s", "is not a feature key like L15:123"),
    ({"add": "L1.5:3"}, "add", "is not a feature key"),
    ({"mode": "sideways"}, "mode", "use one of add, clamp, pin, own"),
    ({"tokens": "-5"}, "tokens", "is not a whole number"),
    ({"tokens": "0"}, "tokens", "max_new_tokens"),
    ({"temp": "-1"}, "temp", "temperature"),
    ({"top_p": "2"}, "top_p", "top_p"),
    ({"seed": "1e9"}, "seed", "is not a whole number"),
    ({"compare": "yes"}, "compare", "use 1 or 0"),
])
def test_bad_parameters_warn_and_keep_the_defaults(params, name, why):
    setup, warnings = from_query(params, DEFAULTS, n_layers=30, d_sae=256)
    assert setup == DEFAULTS
    assert len(warnings) == 1 and f"parameter {name}=" in warnings[0] and why in warnings[0]


def test_good_parameters_survive_beside_bad_ones():
    setup, warnings = from_query({"s": "L15:3=12", "mode": "nope", "temp": "0.3", "__theme": "dark"}, DEFAULTS, 30, 256)
    assert setup.strengths["L15:3"] == 12.0 and setup.generation.temperature == 0.3 and setup.mode is None
    assert len(warnings) == 1 and "mode" in warnings[0]


def test_oversized_link_is_refused_whole():
    setup, warnings = from_query({"s": "L15:3=1," * 400}, DEFAULTS, 30, 256)
    assert setup == DEFAULTS and f"limit {MAX_QUERY_CHARS}" in warnings[0]


def test_parse_key():
    assert parse_key("L15:123") == (15, 123)
    with pytest.raises(ValueError, match="not a feature key"):
        parse_key("L15-123")


def test_clean_text_drops_control_characters_and_bad_unicode():
    assert clean_text("a\x00b\x07c\nd\te") == "abc\nd\te"
    assert clean_text("bad \ud800 surrogate") == "bad ? surrogate"
    assert clean_text("e\u0301") == "\u00e9"


def test_check_message():
    limits = Limits(max_message_chars=10)
    assert check_message("  hi \x01 ", limits) == "hi"
    with pytest.raises(UserError, match="The message is empty"):
        check_message(" \x00 \n", limits)
    with pytest.raises(UserError, match="has 11 characters; the limit is 10"):
        check_message("x" * 11, limits)


def test_fit_history_drops_oldest_exchanges_and_says_so():
    msgs = [{"role": "user", "content": "a" * 10}, {"role": "assistant", "content": "b" * 10}] * 3 + [{"role": "user", "content": "c" * 10}]
    count = lambda m: sum(len(x["content"]) for x in m)  # noqa: E731
    kept, notices = fit_history(msgs, count, 35)
    assert kept == msgs[4:] and "2 oldest exchange(s)" in notices[0]
    assert fit_history(msgs, count, 1000) == (msgs, [])
    with pytest.raises(UserError, match="longer than the model's 5-token budget"):
        fit_history(msgs, count, 5)


def test_caps_and_strength_clamping():
    settings, notes = cap_generation(GenerationSettings(max_new_tokens=4000), Limits(max_new_tokens=300))
    assert settings.max_new_tokens == 300 and "lowered from 4000 to" in notes[0]
    assert clamp_strength(5.0, -10, 10, "f") == (5.0, [])
    value, notes = clamp_strength(1e12, -10, 10, "feature A")
    assert value == 10 and "(1e+12) was outside its range [-10, 10]" in notes[0]
    for bad in (float("nan"), float("inf"), "3", True):
        with pytest.raises(UserError, match="must be a finite number"):
            clamp_strength(bad, -10, 10, "f")


def test_prompt_lines():
    limits = Limits(max_prompts_per_set=3, max_prompt_chars=5)
    assert prompt_lines(" a \n\n b\x00c \n", limits, "positive") == ["a", "bc"]
    with pytest.raises(UserError, match="The positive set is empty"):
        prompt_lines("\n \n", limits, "positive")
    with pytest.raises(UserError, match="has 4 prompts; the limit is 3"):
        prompt_lines("a\nb\nc\nd", limits, "negative")
    with pytest.raises(UserError, match=r"Line\(s\) \[2\] of the scan set"):
        prompt_lines("a\ntoo long line", limits, "scan")


def test_concept_prompt_sets_are_matched():
    pos, neg = concept_prompt_sets("  the   ocean ")
    assert len(pos) == len(neg) == len(TEMPLATES) == len(NEUTRAL_TOPICS)
    assert pos[0] == "Let me tell you about the ocean" and neg[0] == f"Let me tell you about {NEUTRAL_TOPICS[0]}"
    assert all(p.endswith("the ocean") for p in pos)  # read at the concept's own last token
    with pytest.raises(ValueError, match="the concept is empty"):
        concept_prompt_sets("   ")
