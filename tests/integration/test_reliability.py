"""Faults and oversized input (issue 6), in-process on the real model. Through the launched app:
tests/app/test_reliability_api.py; vectors-file faults: tests/unit/steer/test_vectors.py; history
trimming: tests/unit/service/test_limits.py.

Load, isolation under 8 concurrent sessions and 100 random Stops are measured by
`python benchmarks/reliability.py` (figures in docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import replace

import pytest
import torch

from steering.config import GenerationSettings, load_config
from steering.engine import Engine
from steering.generate.stoppable import cancellable
from steering.model.layers import decoder_layers
from steering.service.demo import DemoService
from steering.service.limits import Limits, UserError
from steering.steer.vectors import vectors_for_config
from tests.conftest import write_test_demo
from tests.helpers import random_sae, write_sae

GREEDY = GenerationSettings(max_new_tokens=8, temperature=0.0)
ASK = "Tell me about your favourite city."


@pytest.fixture(scope="module")
def service(smollm2, tmp_path_factory):
    config = load_config(write_test_demo(tmp_path_factory.mktemp("rel")))
    steerer = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    return DemoService(steerer, Limits(max_new_tokens=64))


def _answer(service, message=ASK, history=(), **setup) -> str:
    return list(service.chat(message, list(history), replace(service.defaults(), generation=GREEDY, **setup)))[-1].steered


def _generating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "steering-generate" and t.is_alive()]


# ---- faults ------------------------------------------------------------------------------------

def test_out_of_memory_mid_stream_gives_a_readable_message_and_the_next_request_works(service):
    baseline = _answer(service, strengths={"L15:3": 80.0})
    calls = {"n": 0}

    def run_out(module, args):
        calls["n"] += 1
        if calls["n"] == 4:  # a few tokens into the answer, with steering active
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    handle = decoder_layers(service.engine.model)[3].register_forward_pre_hook(run_out)
    try:
        with pytest.raises(UserError, match=r"ran out of memory.*try fewer max new tokens.*Your conversation is kept"):
            _answer(service, strengths={"L15:3": 80.0})
    finally:
        handle.remove()
    assert calls["n"] >= 4
    assert service.engine.active_requests == 0 and not _generating_threads()  # no steering left behind by the failure
    assert _answer(service, strengths={"L15:3": 80.0}) == baseline


def test_stop_before_the_first_token_ends_the_generation_at_once(service):
    chat = service.chat(ASK, [], replace(service.defaults(), strengths={"L15:3": 80.0}, generation=GenerationSettings(max_new_tokens=64, temperature=0.0)))
    first = next(chat)
    assert first.steered == ""
    chat.close()  # what Gradio does on Stop: the generator is closed at its first (empty) update
    assert not _generating_threads() and service.engine.active_requests == 0


def test_a_cancel_mid_answer_ends_it_at_that_steps_boundary_with_no_token_after(service, monkeypatch):
    """Stop as app.py wires it (`cancellable` over `DemoService.chat`, cancelled as Gradio's /cancel does): a
    cancel landing while the 6th forward pass runs drops that step's token and runs no step after, and
    the cancel completes only once the generation has ended. Counted in steps and states, not seconds."""
    engine, rows, forwards, reached = service.engine, [], [], []
    submit = engine.batcher.submit
    monkeypatch.setattr(engine.batcher, "submit", lambda group: (rows.extend(group), submit(group))[1])
    setup = replace(service.defaults(), strengths={"L15:3": 40.0},
                    generation=GenerationSettings(max_new_tokens=64, temperature=0.0))
    cancel_in = 6

    async def main():
        loop = asyncio.get_running_loop()

        async def consume():
            async for _ in cancellable(service.chat)(ASK, [], setup):
                pass

        task = asyncio.create_task(consume())

        def forward(module, args):
            forwards.append(len(rows[0].tokens))
            if len(forwards) == cancel_in:
                loop.call_soon_threadsafe(task.cancel)  # Stop, while this step runs
                reached.append(rows[0].stop_event.wait(30))

        handle = decoder_layers(engine.model)[0].register_forward_pre_hook(forward)
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            handle.remove()
        return engine.active_requests, _generating_threads()

    active, threads = asyncio.run(main())
    (row,) = rows
    assert reached == [True]  # the cancel reached the decoder during the step it landed in
    assert forwards == list(range(cancel_in))  # ...and no forward pass ran after that one
    assert len(row.tokens) == cancel_in - 1 and row.finished.is_set() and row.error is None
    assert active == 0 and not threads  # the cancel completed after the generation had ended


def test_sae_narrower_than_the_model_is_refused_at_start_with_the_fix(smollm2, tmp_path):
    demo = write_test_demo(tmp_path)
    write_sae(tmp_path / "sae" / "layer_15", random_sae(512, 256, "jumprelu", seed=1, layer=15))  # d_in 512, model is 576 wide
    config = load_config(demo)
    steerer = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    with pytest.raises(ValueError, match=r"width 512, but the model's residual width is 576.*Point `sae:` at an SAE for"):
        DemoService(steerer)
    with pytest.raises(ValueError, match=r"width d_in=512, but the model's residual width .* is d_model=576"):
        steerer.sae(15)  # the inspector names the mismatch too


# ---- oversized input, in-process ---------------------------------------------------------------

def test_conversation_far_over_the_context_window_is_trimmed_and_answered(service):
    history = [{"role": "user", "content": "Tell me a long story about dragons. " * 50}, {"role": "assistant", "content": "Once upon a time " * 120}] * 60
    updates = list(service.chat("And then?", history, replace(service.defaults(), generation=GenerationSettings(max_new_tokens=4, temperature=0.0))))
    assert any("oldest exchange(s) were left out" in n for n in updates[-1].notices)
    assert updates[-1].steered


def test_an_added_feature_the_sae_cannot_serve_names_no_server_path(service):
    setup = replace(service.defaults(), custom=((3, 5),), strengths={"L3:5": 10.0}, generation=GREEDY)  # no SAE folder for layer 3
    with pytest.raises(UserError, match="cannot be read from this demo's SAE. Add features at layer 15") as info:
        list(service.chat("hi", [], setup))
    assert os.sep + "sae" not in str(info.value) and "/tmp" not in str(info.value)


