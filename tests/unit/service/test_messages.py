"""steering/service/messages.py: chat history and generation settings from UI and API values."""

import pytest

from steering.config import GenerationSettings
from steering.service.limits import UserError
from steering.service.messages import PAGE_NAMES, generation_settings, plain_history


def test_gradio_message_parts_become_plain_turns():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}], "metadata": None, "options": None},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": {"type": "text", "text": "one part"}},
        {"role": "assistant", "content": [{"type": "text", "text": "  \x00  "}]},  # an answer stopped before its first token
        {"role": "user", "content": ["plain ", "strings"]},
    ]
    assert plain_history(history) == [
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "one part"}, {"role": "user", "content": "plain strings"},
    ]
    assert plain_history(None) == [] and plain_history([]) == []


@pytest.mark.parametrize("history, message", [
    ("hello", "history must be a list of messages"),
    ([{"role": "system", "content": "ignored"}], "history[0].role must be \"user\" or \"assistant\", got 'system'"),
    ([{"role": "user", "content": [{"type": "file", "path": "/etc/passwd"}]}], "history[0].content[0] must be a text part"),
    (["not a turn"], "history[0] must be a message"),
])
def test_malformed_history_is_refused_by_name(history, message):
    with pytest.raises(UserError) as info:
        plain_history(history)
    assert message in str(info.value)


BASE = GenerationSettings()


def test_generation_settings_from_numbers():
    given = {"max_new_tokens": 12.0, "temperature": 0.5, "top_p": 0.9, "repetition_penalty": 1.1, "seed": -1}
    assert generation_settings(given, BASE) == GenerationSettings(12, 0.5, 0.9, 1.1, None)
    assert generation_settings({"seed": None}, BASE).seed is None
    assert generation_settings({"seed": 7.0}, BASE).seed == 7
    assert generation_settings({}, BASE) == BASE  # a setting left out keeps the base's


@pytest.mark.parametrize("given, message", [
    ({"top_p": 5.0}, "top_p must be a finite number > 0 and <= 1 (1 turns nucleus sampling off), got 5.0."),
    ({"max_new_tokens": "many"}, "max_new_tokens must be a whole number from 1 to 16384, got 'many'."),
    ({"temperature": "0.5"}, "temperature must be a finite number from 0 to 2 (0 is greedy), got '0.5'."),
    ({"temperature": 2.5}, "temperature must be a finite number from 0 to 2 (0 is greedy), got 2.5."),
    ({"repetition_penalty": float("nan")}, "repetition_penalty must be a finite number > 0 and <= 2 (1 is no penalty), got nan."),
    ({"seed": "abc"}, "seed must be a whole number from -1 to 9223372036854775807 (-1 for a random seed each time), got 'abc'."),
    ({"seed": 2**64}, "seed must be a whole number from -1 to 9223372036854775807 (-1 for a random seed each time), got 18446744073709551616."),
    ({"seed": -2}, "got -2."),
])
def test_bad_generation_settings_name_the_argument(given, message):
    with pytest.raises(UserError) as info:
        generation_settings(given, BASE)
    assert str(info.value).endswith(message)


def test_each_caller_is_refused_under_its_own_name():
    with pytest.raises(UserError, match=r"^Temperature must be a finite number from 0 to 2"):
        generation_settings({"temperature": -1}, BASE, PAGE_NAMES)
