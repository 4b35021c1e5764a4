"""steering.backends.hooks on the tiny random Llama: one row of a batch per plan, the small-batch route on while
batching and off after close, every hook gone after close, residual reads under a plan; and the nnsight
backend's refusal when nnsight is missing, before anything is attached."""

from __future__ import annotations

import queue
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steering.backends.hooks import HooksBackend
from steering.config import GenerationSettings
from steering.generate.decode import END, Request, RequestSpec
from steering.model.layers import decoder_layers
from steering.steer.plan import Edit, SteeringPlan
from tests.helpers import tiny_tokenizer

GREEDY = GenerationSettings(max_new_tokens=6, temperature=0.0, repetition_penalty=1.0)


def _row(ids, plan=None, tag=0, events=None):
    return Request(RequestSpec(torch.tensor([ids]), plan, GREEDY, tag), events or queue.SimpleQueue())


def test_a_batch_of_rows_equals_each_row_alone_and_every_row_ends(tiny_llama):
    u = torch.nn.functional.normalize(torch.ones(32), dim=0)
    plans = [None, SteeringPlan({1: [Edit("add", u, 8.0)]})]
    with HooksBackend(tiny_llama, tiny_tokenizer()) as backend:
        alone = []
        for plan in plans:
            r = _row([1, 5, 6, 7], plan)
            backend.generate([r])
            alone.append(r.tokens)
        events = queue.SimpleQueue()
        rows = [_row([1, 5, 6, 7], plan, tag, events) for tag, plan in enumerate(plans)]
        backend.generate(rows)
        assert [r.tokens for r in rows] == alone and alone[0] != alone[1]
        assert all(r.finished.is_set() and r.error is None for r in rows) and backend.active == 0
        ends = []
        while not events.empty():
            tag, piece = events.get()
            ends += [tag] if piece is END else []
        assert sorted(ends) == [0, 1]


def test_close_undoes_the_batch_route_and_every_hook():
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1)).eval()  # its own: no other holder
    backend = HooksBackend(model, tiny_tokenizer())
    layers = decoder_layers(model)
    assert all(layer._forward_hooks for layer in layers)
    assert backend.batch(4) is True and "forward" in vars(model.lm_head)  # the small-batch route
    backend.close()
    assert "forward" not in vars(model.lm_head)
    assert "_steering_hooks" not in vars(model) and not any(layer._forward_hooks for layer in layers)


def test_steered_reads_and_the_model_description(tiny_llama):
    tok = tiny_tokenizer()
    with HooksBackend(tiny_llama, tok) as backend:
        assert (backend.name, backend.n_layers, backend.model) == ("hooks", 4, tiny_llama)
        assert backend.eos_ids == sorted({2, tok.eos_token_id}) and backend.stop_text is None  # a chat template
        u = torch.nn.functional.normalize(torch.ones(32), dim=0)
        plain, steered = (backend.read_residuals([[1, 5, 6]], 2, plan)[0]
                          for plan in (None, SteeringPlan({2: [Edit("add", u, 3.0)]})))
        torch.testing.assert_close(steered, plain + 3.0 * u)
        with pytest.raises(ValueError, match="out of range: this model has decoder layers 0..3"):
            backend.read_residuals([[1, 5]], 4)


def test_the_nnsight_backend_refuses_without_nnsight_before_attaching_anything(tiny_llama, monkeypatch):
    from steering.backends.nnsight import NNsightBackend

    monkeypatch.setitem(sys.modules, "nnsight", None)
    with pytest.raises(RuntimeError, match="backend: nnsight needs the nnsight package: pip install nnsight"):
        NNsightBackend(tiny_llama, tiny_tokenizer())
    assert "_steering_hooks" not in vars(tiny_llama)
