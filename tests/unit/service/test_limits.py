"""steering.service.limits: input limits and history trimming, pure functions, exact expectations."""

import math

import pytest

from steering.config import GenerationSettings
from steering.service.limits import (
    Limits,
    UserError,
    cap_generation,
    check_message,
    clamp_strength,
    clean_text,
    fit_history,
    prompt_lines,
)


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


def test_huge_history_costs_few_tokenisations_and_keeps_the_newest_turns():
    history = [m for i in range(5000) for m in ({"role": "user", "content": f"question {i} " + "w" * 40}, {"role": "assistant", "content": f"answer {i} " + "w" * 40})]
    messages = history + [{"role": "user", "content": "last"}]
    calls = []

    def count(ms):
        calls.append(len(ms))
        return sum(len(m["content"]) // 4 + 3 for m in ms)

    kept, notices = fit_history(messages, count, 2048)
    assert kept[-1]["content"] == "last" and kept[-2]["content"].startswith("answer 4999")
    assert count(kept) <= 2048 and count(messages[len(messages) - len(kept) - 2:]) > 2048  # as many turns as fit, no fewer
    assert len(calls) <= 2 * math.ceil(math.log2(len(messages))) + 4  # bisection, not one tokenisation per exchange
    assert all(n <= 2048 * 16 // 40 + 4 for n in calls)  # untokenised pre-trim: never the whole 10,000-turn history
    assert "oldest exchange(s) were left out" in notices[0]
