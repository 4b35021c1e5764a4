"""Every named endpoint's bad argument, through gradio_client and raw HTTP against the launched app: the
message names the argument and shows the value with its quotes, the log gets no traceback, and the app
keeps answering. The validators themselves are tested in tests/unit/service/test_inputs.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client

from tests.helpers import raw_api_call

ASK = "Tell me about your favourite city."
CHAT_REST = ("own", None, 4, 0.0)  # mode, add_features, max_new_tokens, temperature


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server, verbose=False)


@pytest.fixture(scope="module")
def app_log(app_server, tmp_path_factory):
    """The app's log file, and how long it was before this module's calls."""
    logs = sorted(Path(tmp_path_factory.getbasetemp()).glob("app*/app.log"))
    assert logs, "the app_server fixture's log was not found"
    return logs[0], len(logs[0].read_text(errors="replace"))


@pytest.fixture(scope="module")
def baseline(client, app_log):
    return client.predict(ASK, None, None, *CHAT_REST, api_name="/chat")


def _refused(client, api_name: str, *args) -> str:
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert "Traceback" not in message and "Something went wrong" not in message
    return message


CASES = [  # (endpoint, arguments, the argument named, what the message says)
    ("/chat", (ASK, None, {"L99:1": 1.0}, *CHAT_REST), "strengths", "names L99:1, which is not a feature here. The features are L15:3, L15:4;"),
    ("/chat", (ASK, None, {"L15:999999999": 1.0}, *CHAT_REST), "strengths", "names L15:999999999"),
    ("/chat", (ASK, None, {"garbage": 1.0}, *CHAT_REST), "strengths", ": 'garbage' is not a feature key"),
    ("/chat", (ASK, None, [1, 2], *CHAT_REST), "strengths", "must be an object of feature key -> strength"),
    ("/chat", (ASK, None, "L15:3", *CHAT_REST), "strengths", "got 'L15:3'."),
    ("/chat", (ASK, None, {"L15:3": "strong"}), "strengths['L15:3']", "must be a finite number, or null"),
    ("/chat", (ASK, None, None, "own", [3]), "add_features[0]", ": 3 is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123."),
    ("/chat", (ASK, None, None, "own", 3), "add_features", "must be a list of feature keys"),
    ("/chat", (ASK, None, None, "own", ["garbage"]), "add_features[0]", ": 'garbage' is not a feature key"),
    ("/chat", (ASK, None, None, "bogus"), "mode", "must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, own, got 'bogus'."),
    ("/chat", (ASK, None, {"L15:3": {"strength": 200, "mode": "angular"}}, *CHAT_REST), "strengths['L15:3'].strength",
     "must be an angle from 0 to 180 degrees for mode angular (90 removes the feature), got 200."),
    ("/chat", (ASK, None, {"L15:3": {"strength": 1, "condition": {"feature": "L16:1", "above": 0}}}, *CHAT_REST),
     "strengths['L15:3'].condition.feature", ": L16:1 is read at layer 16, after the steered layer 15"),
    ("/chat", (ASK, None, {"L15:3": {"strength": 1, "mode": "cap"}}, "clamp"), "strengths['L15:3'].mode",
     ": mode 'clamp' is set for every feature, which would override this one."),
    ("/chat", (None,), "message", "must be text, got None."),
    ("/chat", (ASK, "hello"), "history", "must be a list of messages"),
    ("/chat", (ASK, [1, 2]), "history[0]", "must be a message"),
    ("/chat", (ASK, {"role": "user", "content": "hi"}), "history", "got {'role': 'user', 'content': 'hi'}."),
    ("/chat", (ASK, [["hi", "hello"]]), "history[0]", "the old [user, assistant] pairs format is not read"),
    ("/chat", (ASK, [{"role": "system", "content": "x"}]), "history[0].role", "got 'system'"),
    ("/chat", (ASK, None, None, "own", None, None, None, None, None, "abc"), "seed",
     "must be a whole number from -1 to 9223372036854775807 (-1 for a random seed each time), got 'abc'."),
    ("/chat", (ASK, None, None, "own", None, 0), "max_new_tokens", "must be a whole number from 1 to 16384, got 0."),
    ("/chat", (ASK, None, None, "own", None, 4, 5.0), "temperature", "must be a finite number from 0 to 2 (0 is greedy), got 5.0."),
    ("/chat", (ASK, None, None, "own", None, 4, 0.0, None, None, None, {"L15:3": "sideways"}), "modes['L15:3']",
     "must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, got 'sideways'."),
    ("/chat", (ASK, None, None, "own", None, 4, 0.0, None, None, None, {"L15:9": "pin"}), "modes", "names L15:9, which is not a feature here."),
    ("/chat", (ASK, None, None, "own", None, 4, 0.0, None, None, None, None, None, "extra"), "/chat",
     ("takes 12 argument(s) (message, history, strengths, mode, add_features, max_new_tokens, temperature, top_p, "
      "repetition_penalty, seed, modes, concepts), got 13; the extra value(s) ['extra'] would be ignored.")),
    ("/chat", (ASK, None, None, "own", None, 4, 0.0, None, None, None, None, [{"phrase": "d@g"}]), "concepts[0].phrase",
     "concept 'd@g': write 1-60 letters, digits, spaces, apostrophes or hyphens"),
    ("/chat", (ASK, None, None, "own", None, 4, 0.0, None, None, None, None, [{"phrase": "dogs", "mode": "pin"}]),
     "concepts[0].mode", "(pin needs an SAE feature), got 'pin'."),
    ("/concept_vector", ("d@gs",), "phrase", "concept 'd@gs': write 1-60 letters"),
    ("/concept_vector", ("dogs", 99), "layer", "must be a whole number from 0 to 29, got 99."),
    ("/concept_vector", ("dogs", None, "dreamt"), "source", "must be one of generated, written, got 'dreamt'."),
    ("/calibrate", ("x",), "feature", "must be a whole number, got 'x'."),
    ("/inspect", (None,), "prompt", "must be text, got None."),
    ("/inspect", ("sea", "x"), "top_n", "must be a whole number from 1 to 50, got 'x'."),
    ("/inspect", ("sea", 5, 6), "view", "must be one of message, last, got 6."),
    ("/inspect", ("sea", 5, "message", "much"), "max_density", "must be a finite number from 0 to 1, got 'much'."),
    ("/inspect", ("sea", 5, "message", 0.01, 7), "/inspect", "takes 4 argument(s) (prompt, top_n, view, max_density), got 5"),
    ("/differential", (None, "taxes"), "positive", "must be text, got None."),
    ("/scan", ("sea", "x"), "feature", "must be a whole number, got 'x'."),
    ("/concept_search", (None,), "concept", "must be text, got None."),
    ("/concept_search", ("the ocean", "ten"), "top_n", "got 'ten'."),
    ("/status", (1,), "/status", "takes no arguments, got 1"),
]


@pytest.mark.parametrize("api_name, args, name, says", CASES, ids=[f"{c[0]} {c[2]} {c[3][:30]}" for c in CASES])
def test_each_bad_argument_is_refused_by_name(client, baseline, api_name, args, name, says):
    message = _refused(client, api_name, *args)
    assert message.startswith(name) and says in message


def _raw(app_server: str, api: str, body: str):
    return raw_api_call(app_server, api, body)


@pytest.mark.parametrize("api, body, says", [
    ("inspect", '{"data": ["sea", NaN]}', "top_n must be a whole number from 1 to 50, got nan."),
    ("concept_search", '{"data": ["the ocean", Infinity]}', "top_n must be a whole number from 1 to 50, got inf."),
    ("chat", '{"data": ["hi", null, null, "own", null, 4, NaN]}', "temperature must be a finite number from 0 to 2 (0 is greedy), got nan."),
    ("chat", '{"data": ["hi", null, null, "own", null, 4, 0.0, null, -Infinity]}', "repetition_penalty must be a finite number > 0 and <= 2 (1 is no penalty), got -inf."),
    ("chat", '{"data": ["hi", null, {"L15:3": NaN}]}', "strengths['L15:3'] must be a finite number"),
    ("chat", '{"data": []}', "message must be text, got None."),
    ("scan", '{"data": ["sea", 3, 4, 5]}', "/scan takes 2 argument(s) (prompts, feature), got 4"),
])
def test_raw_http_non_finite_numbers_and_wrong_counts_are_refused_by_name(app_server, baseline, api, body, says):
    event, data = _raw(app_server, api, body)
    assert event == "error" and says in data["error"]


def test_raw_http_may_leave_out_trailing_arguments(app_server, baseline):
    event, data = _raw(app_server, "chat", json.dumps({"data": [ASK, None, None, *CHAT_REST]}))
    assert event == "complete" and data == [baseline]


def test_the_app_keeps_answering_and_logs_no_traceback(client, baseline, app_log):
    assert client.predict(ASK, None, None, *CHAT_REST, api_name="/chat") == baseline
    assert client.predict(api_name="/status")["active_generations"] == 0
    path, start = app_log
    assert "Traceback" not in path.read_text(errors="replace")[start:]
