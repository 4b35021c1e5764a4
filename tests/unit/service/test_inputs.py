"""steering/service/inputs.py: every argument refused by name, with its value and what to send instead."""

import math

import pytest

from steering.keys import FeatureKey
from steering.service import inputs
from steering.service.errors import visitor_message
from steering.service.limits import UserError


def _refusal(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_shown_values_are_cut_short():
    assert inputs.shown("abc") == "'abc'"
    long = inputs.shown("x" * 10_000)
    assert len(long) == inputs.SHOWN_CHARS and long.endswith("...")


@pytest.mark.parametrize("value, shown", [(None, "None"), (3, "3"), (["hi"], "['hi']"), ({"text": "hi"}, "{'text': 'hi'}")])
def test_text_refuses_anything_but_a_string(value, shown):
    assert _refusal(inputs.text, value, "message") == f"message must be text, got {shown}."
    assert inputs.text("hi", "message") == "hi"


@pytest.mark.parametrize("value, shown", [
    ("x", "'x'"), (float("nan"), "nan"), (float("inf"), "inf"), (-math.inf, "-inf"), (True, "True"), (None, "None"),
    (2.5, "2.5"), (0, "0"), (51, "51"), (10**400, "1" + "0" * 56 + "..."),
])
def test_whole_number_refuses_text_nan_fractions_and_out_of_range(value, shown):
    assert _refusal(inputs.whole_number, value, "top_n", 1, 50) == f"top_n must be a whole number from 1 to 50, got {shown}."


def test_whole_number_takes_floats_that_are_whole():
    assert inputs.whole_number(8.0, "top_n", 1, 50) == 8 and isinstance(inputs.whole_number(8.0, "top_n"), int)
    assert inputs.whole_number(-3, "seed") == -3
    assert _refusal(inputs.whole_number, "7", "seed", what="a whole number (-1 for random)") == \
        "seed must be a whole number (-1 for random), got '7'."


@pytest.mark.parametrize("value", ["0.5", float("nan"), float("inf"), False, None, [1]])
def test_number_refuses_non_finite_and_non_numbers(value):
    assert _refusal(inputs.number, value, "temperature", lo=0).startswith("temperature must be a finite number >= 0, got ")


def test_number_ranges_are_worded():
    assert inputs.number(1, "top_p", 0, 1, above=True) == 1.0
    assert _refusal(inputs.number, 0, "top_p", 0, 1, above=True) == "top_p must be a finite number > 0 and <= 1, got 0."
    assert _refusal(inputs.number, 0.0, "repetition_penalty", lo=0, above=True) == "repetition_penalty must be a finite number > 0, got 0.0."


def test_choice_names_the_options_and_keeps_the_quotes():
    assert inputs.choice("add", "mode", ("add", "own")) == "add"
    assert _refusal(inputs.choice, "bogus", "mode", ("add", "own")) == "mode must be one of add, own, got 'bogus'."
    assert _refusal(inputs.choice, None, "mode", ("add", "own")) == "mode must be one of add, own, got None."


# ---- feature keys and strengths ----------------------------------------------------------------

def test_feature_keys_parse_and_drop_duplicates():
    assert inputs.feature_keys(None, "add_features") == ()
    assert inputs.feature_keys(["L15:3", " L15:3 ", "L2:9"], "add_features") == (FeatureKey(15, 3), FeatureKey(2, 9))


@pytest.mark.parametrize("value, message", [
    ("L15:3", "add_features must be a list of feature keys, e.g. [\"L15:123\"], got 'L15:3'."),
    (3, "add_features must be a list of feature keys, e.g. [\"L15:123\"], got 3."),
    ({"L15:3": 1}, "add_features must be a list of feature keys, e.g. [\"L15:123\"], got {'L15:3': 1}."),
    ([3], "add_features[0]: 3 is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    (["L15:3", None], "add_features[1]: None is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    (["garbage"], "add_features[0]: 'garbage' is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
])
def test_bad_feature_keys_are_refused_by_position(value, message):
    assert _refusal(inputs.feature_keys, value, "add_features") == message


def test_strengths_take_numbers_and_null():
    assert inputs.strengths(None) == {}
    assert inputs.strengths({"L15:3": 40, "L15:4": None, "L2:1": -1e300}) == {FeatureKey(15, 3): 40, FeatureKey(15, 4): None, FeatureKey(2, 1): -1e300}


@pytest.mark.parametrize("value, message", [
    ([1, 2], 'strengths must be an object of feature key -> strength, e.g. {"L15:3": 40, "L15:7": null}, got [1, 2].'),
    ("L15:3=40", 'strengths must be an object of feature key -> strength, e.g. {"L15:3": 40, "L15:7": null}, got \'L15:3=40\'.'),
    ({"garbage": 1.0}, "strengths: 'garbage' is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    ({"L15:3": "strong"}, "strengths['L15:3'] must be a finite number, or null to switch the feature off, got 'strong'."),
    ({"L15:3": float("nan")}, "strengths['L15:3'] must be a finite number, or null to switch the feature off, got nan."),
    ({"L15:3": True}, "strengths['L15:3'] must be a finite number, or null to switch the feature off, got True."),
    ({"L15:3": [40]}, "strengths['L15:3'] must be a finite number, or null to switch the feature off, got [40]."),
])
def test_bad_strengths_are_refused_by_name(value, message):
    assert _refusal(inputs.strengths, value) == message


def test_a_strength_for_a_feature_that_is_not_here_is_refused_with_the_ones_that_are():
    known = [FeatureKey(15, 3), FeatureKey(15, 4)]
    inputs.known_keys([FeatureKey(15, 3)], known, "strengths", "add it with add_features")
    assert _refusal(inputs.known_keys, [FeatureKey(99, 1), FeatureKey(15, 3)], known, "strengths", "add it with add_features") == \
        "strengths names L99:1, which is not a feature here. The features are L15:3, L15:4; add it with add_features."
    assert "names L99:1, L15:999999999, which are not" in _refusal(
        inputs.known_keys, [FeatureKey(99, 1), FeatureKey(15, 999999999)], known, "strengths", "x")
    assert "The features are none yet" in _refusal(inputs.known_keys, [FeatureKey(1, 1)], [], "strengths", "x")


# ---- chat history ------------------------------------------------------------------------------

def test_history_accepts_strings_parts_and_gradio_extras():
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hel"}, {"text": "lo"}], "metadata": None, "options": None},
        {"role": "user", "content": {"type": "text", "text": "one"}},
    ]
    assert inputs.history(history) == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                       {"role": "user", "content": "one"}]
    assert inputs.history(None) == [] and inputs.history(()) == []


@pytest.mark.parametrize("value, message", [
    ("hello", 'history must be a list of messages, e.g. [{"role": "user", "content": "Hi"}], got \'hello\'.'),
    ({"role": "user", "content": "hi"}, "history must be a list of messages"),
    (42, "history must be a list of messages"),
    ([1, 2], "history[0] must be a message {\"role\": \"user\" or \"assistant\""),
    ([["hi", "hello"]], "got ['hi', 'hello'] (the old [user, assistant] pairs format is not read)."),
    ([("hi", "hello")], "the old [user, assistant] pairs format is not read"),
    ([{"role": "user", "content": "a"}, None], "history[1] must be a message"),
    ([{"content": "hi"}], 'history[0].role must be "user" or "assistant", got None.'),
    ([{"role": "system", "content": "x"}], "got 'system' (the system prompt is the model's own and cannot be set)."),
    ([{"role": "user"}], "history[0].content must be text or a list of"),
    ([{"role": "user", "content": 3}], "history[0].content must be text or a list of"),
    ([{"role": "user", "content": {"path": "/srv/secret.txt", "meta": {}}}], "history[0].content must be a text part"),
    ([{"role": "user", "content": [{"type": "file", "path": "x"}]}], "history[0].content[0] must be a text part"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "history[0].content[0] must be a text part"),
    ([{"role": "user", "content": [[["deep"]], 1]}], "history[0].content[1] must be text"),
])
def test_malformed_history_is_refused_where_it_is_wrong(value, message):
    assert message in _refusal(inputs.history, value)


# ---- endpoint arity ----------------------------------------------------------------------------

def test_extra_arguments_are_refused_and_missing_ones_take_their_defaults():
    names, defaults = ["prompt", "top_n"], [None, 10]
    assert inputs.arguments("/inspect", names, defaults, ["sea"]) == ["sea", 10]
    assert inputs.arguments("/inspect", names, defaults, []) == [None, 10]  # the prompt's own check refuses None
    assert inputs.arguments("/inspect", names, defaults, ["sea", 3]) == ["sea", 3]
    assert _refusal(inputs.arguments, "/inspect", names, defaults, ["sea", 3, "extra"]) == \
        "/inspect takes 2 argument(s) (prompt, top_n), got 3; the extra value(s) ['extra'] would be ignored. Remove them."
    assert _refusal(inputs.arguments, "/status", [], [], [1]).startswith("/status takes no arguments, got 1;")


# ---- quotes reach the visitor intact -------------------------------------------------------------

@pytest.mark.parametrize("fn, args", [
    (inputs.choice, ("bogus", "mode", ("add", "own"))),
    (inputs.feature_keys, (["garbage"], "add_features")),
    (inputs.strengths, ({"garbage": 1},)),
    (inputs.strengths, ({"L15:3": "strong"},)),
])
def test_refusals_reach_the_visitor_with_every_quote(fn, args):
    with pytest.raises(UserError) as info:
        fn(*args)
    assert visitor_message(info.value) == str(info.value)


@pytest.mark.parametrize("text", ["'garbage' is not a feature key", "mode must be one of add, got 'bogus'", '"quoted" both ends "',
                                  "got '/srv/app/secret.txt'"])
def test_visitor_message_keeps_leading_and_trailing_quotes(text):
    shown = visitor_message(UserError(text))
    assert shown[0] == text[0] and shown[-1] == text[-1]
    assert shown == text.replace("/srv/app/", "")
