"""steering/generate/decode.py on a tiny random Llama: the one loop's sampler, stops and per-row batches."""

import queue
import threading

import torch

from steering.config import GenerationSettings
from steering.backends.hooks import HooksRunner
from steering.generate.decode import (
    END,
    Decoder,
    Request,
    RequestSpec,
    RowSampler,
    RowStops,
)
from steering.generate.sampling import sample_token, seeded_generator
from steering.steer.hooks import attach
from steering.steer.plan import Edit, SteeringPlan
from tests.helpers import tiny_tokenizer

TOK = tiny_tokenizer()


def _request(ids, settings, plan=None, events=None, tag=0, record_logits=False):
    r = Request(RequestSpec(torch.tensor([ids]), plan, settings, tag, record_logits), events or queue.SimpleQueue())
    r.start(TOK)
    return r


def _decoder(model, stop_text=None):
    return Decoder(model, TOK, HooksRunner(model, attach(model), []), eos_ids=[2], stop_text=stop_text)


def _drain(events):
    out = []
    while not events.empty():
        out.append(events.get())
    return out


def test_row_sampler_leaves_exactly_each_rows_own_choice():
    scores = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    rows = [_request([1, 5], GenerationSettings(temperature=0.0)),
            _request([7], GenerationSettings(temperature=0.9, top_p=0.8, seed=3))]
    out = RowSampler(rows, offsets=[0, 1])(torch.tensor([[1, 5], [0, 7]]), scores.clone())
    assert int(out[0].argmax()) == int(scores[0].argmax())
    assert int(out[1].argmax()) == int(sample_token(scores[1:], 0.9, 0.8, seeded_generator(3, "cpu")))
    assert (out == 0).sum(dim=-1).tolist() == [1, 1] and torch.isinf(out).sum() == 2 * 99


def test_row_stops_end_each_row_on_its_own_reason():
    settings = GenerationSettings(max_new_tokens=2)
    events = queue.SimpleQueue()
    eos, short, stopped, going = (_request([1], settings, events=events, tag=i) for i in range(4))
    stopped.stop_event.set()
    stops = RowStops([eos, short, stopped, going], eos_ids=[2])
    done = stops(torch.tensor([[1, 2], [1, 9], [1, 9], [1, 9]]), None)
    assert done.tolist() == [True, False, True, False]
    done = stops(torch.tensor([[1, 2, 0], [1, 9, 9], [1, 9, 0], [1, 9, 9]]), None)
    assert done.tolist() == [True, True, True, True]  # max_new_tokens=2 ends the other two
    assert eos.tokens == [2] and short.tokens == [9, 9] and going.tokens == [9, 9]
    ends = [tag for tag, piece in _drain(events) if piece is END]
    assert sorted(ends) == [0, 1, 2, 3]


def test_a_stop_text_ends_a_plain_completion_row():
    ids = TOK("Assistant: hello", add_special_tokens=False)["input_ids"]
    row = _request([1], GenerationSettings(max_new_tokens=50))
    stops = RowStops([row], eos_ids=[2], tokenizer=TOK, stop_text="hello")
    assert not stops(torch.tensor([[1, ids[0]]]), None).item()
    assert stops(torch.tensor([[1, ids[0], ids[-1]]]), None).item()


def test_a_batch_of_rows_gives_each_row_its_lone_answer(tiny_llama):
    """Rows of different lengths and plans, greedy and seeded: each equals its request run alone."""
    decoder = _decoder(tiny_llama)
    u = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(4)), dim=0)
    specs = [([1, 5, 6, 7], GenerationSettings(max_new_tokens=6, temperature=0.0), SteeringPlan({1: [Edit("add", u, 4.0)]})),
             ([1, 8], GenerationSettings(max_new_tokens=4, temperature=0.9, seed=7), None),
             ([1, 9, 10], GenerationSettings(max_new_tokens=5, temperature=0.0, repetition_penalty=1.3), None)]
    batch = [_request(ids, s, p, tag=i) for i, (ids, s, p) in enumerate(specs)]
    decoder.run(batch)
    for (ids, s, p), row in zip(specs, batch):
        alone = _request(ids, s, p)
        decoder.run([alone])
        assert row.tokens == alone.tokens and row.error is None and row.finished.is_set()
        assert len(row.tokens) == s.max_new_tokens or row.tokens[-1] == 2
    assert decoder.active == 0


def test_an_error_reaches_every_row_and_frees_it(tiny_llama):
    def broken(h):
        raise RuntimeError("encoder exploded")

    u = torch.ones(32) / 32 ** 0.5
    bad = SteeringPlan({0: [Edit("pin", u, 1.0, 1.0, broken)]})
    rows = [_request([1, 5], GenerationSettings(max_new_tokens=3), bad, tag=0),
            _request([1, 6], GenerationSettings(max_new_tokens=3), None, tag=1)]
    _decoder(tiny_llama).run(rows)
    assert all(isinstance(r.error, RuntimeError) and r.finished.is_set() for r in rows)


def test_a_row_stopped_before_its_batch_starts_is_skipped(tiny_llama):
    decoder = _decoder(tiny_llama)
    row = _request([1, 5], GenerationSettings(max_new_tokens=3))
    row.stop_event.set()
    decoder.run([row])
    assert row.finished.is_set() and row.tokens == [] and decoder.active == 0


def test_run_uses_the_calling_thread(tiny_llama):
    seen = []
    decoder = _decoder(tiny_llama)
    decoder.runner.generate = lambda rows, offsets, **kw: seen.append(threading.current_thread())
    decoder.run([_request([1, 5], GenerationSettings(max_new_tokens=1))])
    assert seen == [threading.current_thread()]


def test_stop_during_a_step_drops_that_steps_token_and_runs_no_step_after(tiny_llama):
    """Stop lands while the 4th forward pass runs: the row ends at that step's boundary with 3 tokens."""
    decoder = _decoder(tiny_llama)
    settings = GenerationSettings(max_new_tokens=12, temperature=0.0)
    alone = _request([1, 5, 6], settings)
    decoder.run([alone])
    assert len(alone.tokens) > 4  # without Stop the answer goes on

    events = queue.SimpleQueue()
    row = _request([1, 5, 6], settings, events=events, record_logits=True)
    forwards = []

    def forward(module, args):
        forwards.append(len(row.tokens))
        if len(forwards) == 4:
            row.stop_event.set()

    handle = tiny_llama.model.layers[0].register_forward_pre_hook(forward)
    try:
        decoder.run([row])
    finally:
        handle.remove()
    assert forwards == [0, 1, 2, 3]  # no forward pass after the one Stop came in
    assert row.tokens == alone.tokens[:3] and len(row.logits) == 3 and row.finished.is_set()
    assert TOK.decode(alone.tokens[:3], skip_special_tokens=True).strip() == \
        "".join(p for _, p in _drain(events) if p is not END).strip()
