"""On ZeroGPU only `@spaces.GPU` calls may touch the model: every event of the page, driven on the CPU.

There, a function without the decorator has no GPU, and each decorated call runs in a fork that
receives its arguments and sends back its results by pickling. This test imports `app.py` as a
ZeroGPU Space would (`SPACES_ZERO_GPU` set, so no batching and no start-up forward) with
`spaces.GPU` replaced by a recorder that marks its calls and pickles what crosses the fork, then
calls every event handler the page has, and fails if a module forward or an SAE encode runs
outside a GPU call, or if something that crosses the fork does not pickle.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
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
    import spaces  # read its settings before SPACES_ZERO_GPU is set: the real ZeroGPU mode needs a device API

    from steering.sae import core

    rec = Recorder()
    patch = pytest.MonkeyPatch()
    patch.setenv("SPACES_ZERO_GPU", "true")
    patch.setenv("STEERING_CONFIG", str(ROOT / "demo.yaml"))
    patch.setattr(spaces, "GPU", rec.gpu)
    original_pre = core.SAE.pre_activation

    def pre_activation(self, x):
        rec.touch("SAE encode")
        return original_pre(self, x)

    patch.setattr(core.SAE, "pre_activation", pre_activation)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: rec.touch(f"forward of {type(module).__name__}"))
    spec = importlib.util.spec_from_file_location("zerogpu_app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules["zerogpu_app"] = app
    try:
        spec.loader.exec_module(app)
        yield app, rec
    finally:
        handle.remove()
        patch.undo()
        sys.modules.pop("zerogpu_app", None)
        app.ENGINE.close()


def sample_inputs(app, fn) -> list:
    """What the page would send to `fn`: each input component's value, with the text boxes filled in."""
    by_id = {"message": MESSAGE, "concept": "the ocean", "phrase": "the ocean"}
    values = []
    for block in fn.inputs:
        label = getattr(block, "label", None) or ""
        value = getattr(block, "value", None)
        if getattr(block, "elem_id", None) in by_id:
            value = by_id[block.elem_id]
        elif label in ("Positive prompts", "Prompts"):
            value = "I love football.\nThe match was great."
        elif label == "Negative prompts":
            value = "The weather is mild.\nI read a book."
        elif label in ("Feature index",):
            value = 5
        elif label == "Max new tokens":
            value = 3
        if type(block).__name__ == "State" and value == "":
            value = MESSAGE  # the last message sent, which the inspector panel reads
        values.append(value)
    return values


def handler_name(fn) -> str:
    return getattr(fn, "__name__", None) or handler_name(fn.func)  # functools.partial has no name of its own


def run(fn, args):
    """Call an event handler as Gradio would, to its end: generators and async ones drained."""
    out = fn(*args)
    if inspect.isasyncgen(out):
        async def drain():
            return [item async for item in out]
        return asyncio.run(drain())
    if inspect.iscoroutine(out):
        return asyncio.run(out)
    return list(out) if inspect.isgenerator(out) else out


def test_every_event_keeps_model_work_inside_gpu_calls(zerogpu_app):
    app, rec = zerogpu_app
    assert app.ON_ZEROGPU and not app.ENGINE.batcher.batching
    assert rec.outside == [], "model work at start-up, where ZeroGPU has no GPU"
    assert app.ENGINE.norms.known == {}, "typical norms measured at start-up"

    rec.current = "page load"
    run(app.on_load, [types.SimpleNamespace(query_params={"add": f"L{app.ENGINE.inspector_layer}:7"})])
    assert rec.outside == [], f"model work outside a @spaces.GPU call: {sorted(set(rec.outside))}"
    assert rec.gpu_calls["measure_norms"] == 1 and app.ENGINE.norms.known

    done, failed = set(), {}
    for fn in app.demo.fns.values():
        if fn.fn is None:
            continue
        name = handler_name(fn.fn)
        rec.current = f"event {name}"
        args = sample_inputs(app, fn)
        if name == "token_features":
            args = [[[[7, "x", 1.0]]], types.SimpleNamespace(index=0, value=["Tell", None])]
        elif name == "pick_row":
            args = [types.SimpleNamespace(index=[0, 0]), [[11, "x", 1.0]]]
        elif name == "on_load":
            args = [types.SimpleNamespace(query_params={})]
        elif name.startswith("api_"):
            args = api_args(app, name)
        try:
            run(fn.fn, args)
        except Exception as exc:  # a handler refusing a sample is fine; model work outside a GPU call is not
            failed[name] = f"{type(exc).__name__}: {exc}"
        done.add(name)

    assert rec.outside == [], f"model work outside a @spaces.GPU call: {sorted(set(rec.outside))}"
    events = {handler_name(fn.fn) for fn in app.demo.fns.values() if fn.fn is not None}
    assert done == events
    for gpu_event in ("respond", "inspect_panel", "run_concept", "run_differential", "run_scan", "api_chat", "api_inspect",
                      "steer_phrase"):
        assert rec.gpu_calls[gpu_event] >= 1, f"{gpu_event} never ran as a GPU call"
        assert gpu_event not in failed, failed[gpu_event]
    for cpu_event in ("add_custom", "reset_defaults", "share_query", "show_contexts", "show_card", "slot_card", "token_features"):
        assert cpu_event not in failed, failed[cpu_event]
    assert rec.inside > 0
    assert rec.gpu_calls["measure_norms"] == 1, "norms measured again although the page process kept them"


def api_args(app, name: str) -> list:
    key = str(app.ENGINE.features[0].key)
    return {
        "api_chat": [MESSAGE, [], {key: 10.0}, "own", None, 3],
        "api_inspect": [MESSAGE, 5],
        "api_differential": ["I love football.\nGoal!", "The weather is mild.\nA quiet day.", 5],
        "api_scan": ["I love football.\nGoal!", 5],
        "api_concept_search": ["the ocean", 5],
        "api_status": [],
    }[name]


def test_the_recorder_catches_a_forward_outside_a_gpu_call(zerogpu_app):
    app, rec = zerogpu_app
    before = len(rec.outside)
    rec.current = "the check"
    app.ENGINE.model(input_ids=torch.tensor([[1, 2, 3]]))
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
