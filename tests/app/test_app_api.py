"""The launched app through gradio_client: named endpoints, streaming, Stop, concurrency, errors."""

import threading
import time

import pytest
from gradio_client import Client

from steering.backends.hooks import HooksBackend
from steering.config import load_config
from steering.engine import Engine
from steering.service.demo import DemoService
from steering.steer.vectors import vectors_for_config
from tests.helpers import on_test_backend

ASK = "Tell me about your favourite city."


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server, verbose=False)


def _chat(client, **kwargs):
    return client.predict(ASK, None, kwargs.get("strengths"), kwargs.get("mode", "own"), None, kwargs.get("tokens", 24), 0.0, api_name="/chat")


def test_named_endpoints_exist(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/chat", "/inspect", "/differential", "/scan", "/concept_search", "/status"} <= names


def test_chat_streams_in_several_chunks(client):
    job = client.submit("What is the capital of France?", api_name="/chat")
    chunks = list(job)
    assert len(chunks) >= 3
    assert all(chunks[i + 1].startswith(chunks[i]) for i in range(len(chunks) - 1))
    assert "Paris" in chunks[-1]


def test_stop_ends_the_answer_and_the_next_request_is_unaffected(client):
    baseline = _chat(client)
    job = client.submit(ASK, None, {"L15:3": 60.0}, "own", None, 400, 0.0, api_name="/chat")
    deadline = time.time() + 60
    while len(job.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    deadline = time.time() + 60
    while client.predict(api_name="/status")["active_generations"] and time.time() < deadline:
        time.sleep(0.1)
    assert client.predict(api_name="/status")["active_generations"] == 0  # the generating thread has ended
    assert len(job.outputs()[-1]) < 400
    assert _chat(client) == baseline


def test_two_clients_with_different_steering_each_get_their_own(app_server):
    a, b = Client(app_server, verbose=False), Client(app_server, verbose=False)
    solo_a = _chat(a, strengths={"L15:3": 120.0})
    solo_b = _chat(b, strengths={"L15:4": -120.0}, mode="clamp")
    assert solo_a != solo_b
    results = {}
    barrier = threading.Barrier(2)

    def run(name, c, **kw):
        barrier.wait(10)
        results[name] = _chat(c, **kw)

    threads = [
        threading.Thread(target=run, args=("a", a), kwargs={"strengths": {"L15:3": 120.0}}),
        threading.Thread(target=run, args=("b", b), kwargs={"strengths": {"L15:4": -120.0}, "mode": "clamp"}),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert results == {"a": solo_a, "b": solo_b}


def test_a_mode_per_feature_through_the_api(client):
    """`modes` names a feature's own mode; the older `mode` for every feature still works and means the same."""
    every = _chat(client, strengths={"L15:3": 60.0}, mode="clamp")
    each = client.predict(ASK, None, {"L15:3": 60.0}, "own", None, 24, 0.0, None, None, None,
                          {"L15:3": "clamp", "L15:4": "clamp"}, api_name="/chat")
    assert each == every
    pinned = client.predict(ASK, None, {"L15:3": 60.0}, "clamp", None, 24, 0.0, None, None, None, {"L15:3": "pin"}, api_name="/chat")
    assert pinned == client.predict(ASK, None, {"L15:3": 60.0}, "own", None, 24, 0.0, None, None, None, {"L15:3": "pin"}, api_name="/chat")
    assert pinned != every  # the feature's own mode wins over the mode for all


def test_inspect_endpoint_equals_the_library_call(client, app_server, smollm2, tmp_path_factory):
    from tests.conftest import write_test_demo

    config = load_config(on_test_backend(write_test_demo(tmp_path_factory.mktemp("same"))))  # the app's backend
    service = DemoService(Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None)))
    prompt = "The ocean is deep and blue."
    assert client.predict(prompt, 8, api_name="/inspect") == service.inspect(prompt, n=8)
    diff = client.predict("sea\nwaves", "taxes\noffice", 5, api_name="/differential")
    assert diff == service.differential("sea\nwaves", "taxes\noffice", 5)
    scan = client.predict("sea\nwaves", diff[0]["index"], api_name="/scan")
    rows, rate = service.scan("sea\nwaves", diff[0]["index"])
    assert scan == {"rows": rows, "fire_rate": rate}


def test_a_strength_object_steers_with_its_own_mode_and_condition_as_the_library_does(client, smollm2, tmp_path_factory):
    """The named API's per-feature setting against the same setting through the library's service."""
    from tests.conftest import write_test_demo

    config = load_config(write_test_demo(tmp_path_factory.mktemp("modes")))
    service = DemoService(Engine(config, HooksBackend(*smollm2, log=lambda m: None), vectors_for_config(config, log=lambda m: None)))
    settings = [
        {"L15:3": {"strength": 70.0, "mode": "angular"}},
        {"L15:3": {"strength": 70.0, "mode": "angular", "condition": {"feature": "L15:4", "above": 0.0}}},
        {"L15:3": {"strength": 90.0, "mode": "cap"}, "L15:4": {"strength": 60.0, "mode": "norm_add"}},
    ]
    answers = [_chat(client)]
    for strengths in settings:
        setup = service.setup_from_api(strengths, "own", None, 24, 0.0, None, None, None)
        library = [u.steered for u in service.chat(ASK, None, setup)][-1]
        assert _chat(client, strengths=strengths) == library
        answers.append(library)
    assert len(set(answers)) == len(answers), "each setting steers its own way"


@pytest.mark.parametrize("args, message", [
    (("",), "The message is empty"),
    (("hi", None, {"L15:3": 1.0}, "sideways"), "mode must be one of"),
    (("hi", None, None, "own", ["L15:99999"]), "Feature 99999 is outside the SAE"),
    (("hi", None, None, "own", ["fifteen"]), "is not a feature key"),
    (("hi", None, {"L15:3": "strong"}), "must be a finite number"),
])
def test_bad_input_gives_a_readable_error(client, args, message):
    with pytest.raises(Exception, match=message) as info:
        client.predict(*args, api_name="/chat")
    assert "Traceback" not in str(info.value)


def test_inspector_errors_are_readable(client):
    with pytest.raises(Exception, match="Feature 5000 is outside the SAE"):
        client.predict("sea", 5000, api_name="/scan")
    with pytest.raises(Exception, match="The negative set is empty"):
        client.predict("sea", "\n\n", 5, api_name="/differential")


def test_a_concept_vector_is_shown_with_its_features_and_steers_the_chat(client):
    view = client.predict("the ocean", None, "written", api_name="/concept_vector")
    assert view["phrase"] == "the ocean" and view["layer"] == 15 and view["source"] == "written"
    assert len(view["top_features"]) == 10 and 0 < view["decomposition"]["explained"] <= 1
    cosines = [f["cosine"] for f in view["top_features"]]
    assert cosines == sorted(cosines, reverse=True)
    off = {"L15:3": None, "L15:4": None}
    plain = client.predict(ASK, None, off, "own", None, 16, 0.0, api_name="/chat")
    steered = client.predict(ASK, None, off, "own", None, 16, 0.0, None, None, None, None,
                             [{"phrase": "the ocean", "strength": 60}], api_name="/chat")
    assert steered != plain
