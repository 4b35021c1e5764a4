"""On ZeroGPU only `@spaces.GPU` calls may touch the model: every event of the page, driven on the CPU.

There, a function without the decorator has no GPU, and each decorated call runs in a fork that
receives its arguments and sends back its results by pickling. This test builds the service and the
page as `app.main` does on a ZeroGPU Space (`open_service(..., zerogpu=True)`: no batching and no
start-up forward), with a recorder in place of `spaces.GPU` that marks its calls and pickles what
crosses the fork, then calls every event handler the page has, and fails if a module forward or an
SAE encode runs outside a GPU call, or if something that crosses the fork does not pickle.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import pickle
import sys
import types
from collections import Counter

import pytest
import torch

from tests.helpers import ROOT

MESSAGE = "Tell me about football."


class Recorder:
    """Counts GPU calls in flight and every model forward or SAE encode, inside and outside them."""

    def __init__(self):
        self.depth = 0
        self.gpu_calls: Counter = Counter()
        self.outside: list[str] = []
        self.inside = 0

    def touch(self, what: str) -> None:
        if self.depth:
            self.inside += 1
        else:
            self.outside.append(f"{what} during {self.current}")

    current = "start-up"

    def gpu(self, task=None, *, duration=None, size=None):
        """Stands in for `spaces.GPU`: a call is 'on the GPU' while it runs, and its inputs and outputs pickle."""
        if not callable(task):
            return functools.partial(self.gpu, duration=duration, size=size)
        rec = self

        def crossing(value):
            return pickle.loads(pickle.dumps(value))

        if inspect.isgeneratorfunction(task):
            @functools.wraps(task)
            def generator(*args, **kwargs):  # the worker lives from the first step to the close, threads and all
                args, kwargs = crossing((args, kwargs))
                rec.gpu_calls[task.__name__] += 1
                rec.depth += 1
                gen = task(*args, **kwargs)
                try:
                    for item in gen:
                        yield crossing(item)
                finally:
                    gen.close()
                    rec.depth -= 1
            return generator

        @functools.wraps(task)
        def regular(*args, **kwargs):
            args, kwargs = crossing((args, kwargs))
            rec.gpu_calls[task.__name__] += 1
            rec.depth += 1
            try:
                return crossing(task(*args, **kwargs))
            finally:
                rec.depth -= 1
        return regular


@pytest.fixture(scope="module")
def zerogpu_app():
    from app import build_demo
    from steering.sae import core
    from steering.service.start import open_service

    rec = Recorder()
    patch = pytest.MonkeyPatch()
    original_pre = core.SAE.pre_activation

    def pre_activation(self, x):
        rec.touch("SAE encode")
        return original_pre(self, x)

    patch.setattr(core.SAE, "pre_activation", pre_activation)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: rec.touch(f"forward of {type(module).__name__}"))
    service = None
    try:
        service = open_service(ROOT / "demo.yaml", zerogpu=True, gpu=rec.gpu)
        known_calibration(service)
        yield build_demo(service, gpu=rec.gpu), service, rec
    finally:
        handle.remove()
        patch.undo()
        if service is not None:
            service.engine.close()


def known_calibration(service) -> None:
    """Feature 5 of the inspector's layer with a calibration already known (shipped), kept in memory."""
    from steering.inspection.calibrate import Calibration, CalibrationCache

    layer = service.engine.inspector_layer
    known = Calibration(layer, 5, "add", 30.0, 0.5, 1.8, False, ("heritage",))
    service.recommendations.cache = CalibrationCache(ROOT / "no-such-folder", {f"L{layer}:5": known.to_dict()})


BY_ID = {"message": MESSAGE, "concept": "the ocean", "phrase": "the ocean"}


def sample_value(block):
    """What the page would send from `block`: its value, with the text boxes filled in."""
    label = getattr(block, "label", None) or ""
    value = getattr(block, "value", None)
    if getattr(block, "elem_id", None) in BY_ID:
        return BY_ID[block.elem_id]
    if label in ("Positive prompts", "Prompts"):
        return "I love football.\nThe match was great."
    if label == "Negative prompts":
        return "The weather is mild.\nI read a book."
    if label == "Feature index":
        return 5
    if getattr(block, "elem_id", None) == "max_new_tokens":
        return 3
    if type(block).__name__ == "Textbox" and not block.visible:
        return MESSAGE  # the last message sent, which the inspector panel reads
    return value


def sample_args(fn) -> list:
    """The arguments Gradio would call `fn` with: one dict by component for an event given a set of inputs."""
    values = [sample_value(b) for b in fn.inputs]
    return [dict(zip(fn.inputs, values))] if fn.inputs_as_dict else values


def handler_name(fn) -> str:
    return getattr(fn, "__name__", None) or handler_name(fn.func)  # functools.partial has no name of its own


def run(fn, args, kwargs=None):
    """Call an event handler as Gradio would, to its end: generators and async ones drained."""
    out = fn(*args, **(kwargs or {}))
    if inspect.isasyncgen(out):
        async def drain():
            return [item async for item in out]
        return asyncio.run(drain())
    if inspect.iscoroutine(out):
        return asyncio.run(out)
    return list(out) if inspect.isgenerator(out) else out


def request(query=None):
    return types.SimpleNamespace(session_hash="zerogpu-test", query_params=query or {})


def event_name(fn) -> str:
    """The handler's name; a named endpoint's as `/name` (the page has handlers of the same names)."""
    return f"/{fn.api_name}" if fn.api_visibility == "public" else handler_name(fn.fn)


def test_every_event_keeps_model_work_inside_gpu_calls(zerogpu_app):
    demo, service, rec = zerogpu_app
    assert not service.engine.batcher.batching
    assert rec.outside == [], "model work at start-up, where ZeroGPU has no GPU"
    assert service.engine.norms.known == {}, "typical norms measured at start-up"
    events = [fn for fn in demo.fns.values() if fn.fn is not None]
    load = next(fn for fn in events if event_name(fn) == "load")

    rec.current = "page load"
    run(load.fn, [request({"add": f"L{service.engine.inspector_layer}:7"})])
    assert rec.outside == [], f"model work outside a @spaces.GPU call: {sorted(set(rec.outside))}"
    assert rec.gpu_calls["measure"] == 1 and service.engine.norms.known

    done, failed = set(), {}
    for fn in events:
        name = event_name(fn)
        rec.current = f"event {name}"
        args, kwargs = sample_args(fn), {}
        if name == "token_features":
            args = [[[[7, "x", 1.0]]], types.SimpleNamespace(index=0, value=["Tell", None])]
        elif name == "pick_row":
            args = [types.SimpleNamespace(index=[0, 0]), [[11, "x", 1.0]]]
        elif name == "load":
            args = [request()]
        elif name in API_ARGS:
            args = API_ARGS[name](service)
        if name != "load" and "request" in inspect.signature(fn.fn).parameters:
            kwargs = {"request": request()}
        try:
            run(fn.fn, args, kwargs)
        except Exception as exc:  # a handler refusing a sample is fine; model work outside a GPU call is not
            failed[name] = f"{type(exc).__name__}: {exc}"
        done.add(name)

    assert rec.outside == [], f"model work outside a @spaces.GPU call: {sorted(set(rec.outside))}"
    assert {"answer", "stop", "clear", "inspect_panel", "load", *API_ARGS} <= done
    for gpu_call in ("_chat_stream", "_panel", "_phrase", "<lambda>", "scan", "chat", "inspect", "differential",
                     "concept_search", "concept_vector", "calibrate"):
        assert rec.gpu_calls[gpu_call] >= 1, f"{gpu_call} never ran as a GPU call: {dict(rec.gpu_calls)}"
    assert not failed, failed
    assert rec.inside > 0
    assert rec.gpu_calls["measure"] == 1, "norms measured again although the page process kept them"


API_ARGS = {
    "/chat": lambda s: [MESSAGE, [], {str(s.engine.features[0].key): 10.0}, "own", None, 3],
    "/inspect": lambda s: [MESSAGE, 5],
    "/differential": lambda s: ["I love football.\nGoal!", "The weather is mild.\nA quiet day.", 5],
    "/scan": lambda s: ["I love football.\nGoal!", 5],
    "/concept_search": lambda s: ["the ocean", 5],
    "/concept_vector": lambda s: ["the ocean"],
    "/calibrate": lambda s: [5],  # known (see `known_calibration`): the sweep itself is the integration tests'
    "/status": lambda s: [],
}


def test_the_recorder_catches_a_forward_outside_a_gpu_call(zerogpu_app):
    _, service, rec = zerogpu_app
    before = len(rec.outside)
    rec.current = "the check"
    service.engine.model(input_ids=torch.tensor([[1, 2, 3]]))
    assert len(rec.outside) > before
    del rec.outside[before:]


def test_the_device_api_stub_answers_the_spaces_client():
    """The stub in tools/zerogpu speaks the protocol of `spaces`' own client (used for the GPU run)."""
    import httpx
    from spaces.zero.api import APIClient, ScheduleResponse

    sys.path.insert(0, str(ROOT / "tools" / "zerogpu"))
    try:
        from stub_device_api import DeviceAPI, serve
    finally:
        sys.path.remove(str(ROOT / "tools" / "zerogpu"))
    server = serve(DeviceAPI("GPU-test"), 0)
    try:
        client = APIClient(httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}"))
        assert client.startup_report() is httpx.codes.OK
        first, _ = client.schedule(cgroup_path="/sys/fs/cgroup", task_id=1, duration_seconds=30)
        assert isinstance(first, ScheduleResponse) and first.idle and first.nvidiaUUID == "GPU-test"
        second, _ = client.schedule(cgroup_path="/sys/fs/cgroup", task_id=1, duration_seconds=30)
        assert not second.idle, "a GPU with a grant outstanding is not idle"
        assert client.allow(first.allowToken, pid=4242) is httpx.codes.OK
        assert client.release(first.allowToken) is httpx.codes.OK
        assert client.release(first.allowToken) is httpx.codes.NOT_FOUND
        assert client.release(second.allowToken) is httpx.codes.OK
        assert client.get_queue_size() == 0.0
    finally:
        server.shutdown()
