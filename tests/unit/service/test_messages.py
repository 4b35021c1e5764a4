"""steering/service/messages.py: chat history and generation settings from loose UI and API values."""

import pytest

from steering.config import GenerationSettings
from steering.service.limits import UserError
from steering.service.messages import generation_settings, message_text, plain_history


def test_gradio_message_parts_become_plain_turns():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": [{"type": "file", "path": "/etc/passwd"}]},
        {"role": "system", "content": "ignored"},
        "not a turn",
        {"role": "user", "content": "  \x00  "},
    ]
    assert plain_history(history) == [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]
    assert message_text({"type": "text", "text": "x"}) == "x"
    assert message_text(None) == "" and message_text(3) == ""


def test_generation_settings_from_loose_values():
    assert generation_settings(12.0, "0.5", 0.9, 1.1, -1) == GenerationSettings(12, 0.5, 0.9, 1.1, None)
    assert generation_settings(12, 0, 1, 1, "") .seed is None
    assert generation_settings(12, 0, 1, 1, 7.0).seed == 7


def test_bad_generation_settings_name_the_field():
    with pytest.raises(UserError, match="Generation settings: .*top_p"):
        generation_settings(12, 0.7, 5.0, 1.0, 0)
    with pytest.raises(UserError, match="Generation settings"):
        generation_settings("many", 0.7, 0.9, 1.0, 0)
