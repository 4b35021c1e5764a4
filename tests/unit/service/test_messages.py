"""steering/service/messages.py: chat history and generation settings from UI and API values."""

import pytest

from steering.config import GenerationSettings
from steering.service.limits import UserError
from steering.service.messages import generation_settings, plain_history


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


def test_generation_settings_from_numbers():
    assert generation_settings(12.0, 0.5, 0.9, 1.1, -1) == GenerationSettings(12, 0.5, 0.9, 1.1, None)
    assert generation_settings(12, 0, 1, 1, None).seed is None
    assert generation_settings(12, 0, 1, 1, 7.0).seed == 7


@pytest.mark.parametrize("args, message", [
    ((12, 0.7, 5.0, 1.0, 0), "top_p must be a finite number > 0 and <= 1, got 5.0."),
    (("many", 0.7, 0.9, 1.0, 0), "max_new_tokens must be a whole number >= 1, got 'many'."),
    ((12, "0.5", 0.9, 1.0, 0), "temperature must be a finite number >= 0, got '0.5'."),
    ((12, 0.7, 0.9, float("nan"), 0), "repetition_penalty must be a finite number > 0, got nan."),
    ((12, 0.7, 0.9, 1.0, "abc"), "seed must be a whole number (-1 for a random seed), got 'abc'."),
    ((12, 0.7, 0.9, 1.0, 2**64), "seed must be a whole number (-1 for a random seed), got 18446744073709551616."),
])
def test_bad_generation_settings_name_the_argument(args, message):
    with pytest.raises(UserError) as info:
        generation_settings(*args)
    assert str(info.value) == message
