"""steering.inspection.capture through the hooks backend on the tiny random Llama and the in-memory tokenizer:
residuals and codes against the model's own `output_hidden_states`, prompt by prompt, unsteered and steered."""

import pytest
import torch

from steering.backends.hooks import HooksBackend
from steering.inspection.capture import (
    encode_prompts,
    message_codes,
    residuals,
    token_activations,
    typical_norm,
)
from steering.inspection.message import message_positions
from steering.model.chat_template import encode_chat
from steering.steer.plan import Edit, SteeringPlan
from tests.helpers import random_sae, tiny_tokenizer

PROMPTS = ["Hi", "tell me about the sea", "What is the capital of France ?"]  # different lengths: padded batches
LAYER = 1


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture
def backend(tiny_llama, tok):
    with HooksBackend(tiny_llama, tok) as b:
        yield b


def _hidden(model, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """(T, d): the output of decoder layer `layer` for one unpadded prompt (hidden_states[0] is the embedding)."""
    with torch.no_grad():
        return model(input_ids=ids.unsqueeze(0), output_hidden_states=True).hidden_states[layer + 1][0]


def test_last_token_residuals_equal_each_prompt_run_alone(backend, tiny_llama, tok):
    got = residuals(backend, PROMPTS, LAYER, chat=False)
    assert got.shape == (3, 32) and got.dtype == torch.float32
    for row, prompt in zip(got, PROMPTS):
        ids = tok(prompt, return_tensors="pt")["input_ids"][0]
        torch.testing.assert_close(row, _hidden(tiny_llama, ids, LAYER)[-1], rtol=1e-4, atol=1e-5)


def test_every_position_through_the_chat_template(backend, tiny_llama, tok):
    got = residuals(backend, PROMPTS[:2], LAYER, last_token_only=False, system_prompt="Be brief .")
    for h, prompt in zip(got, PROMPTS[:2]):
        ids = encode_chat(tok, [{"role": "user", "content": prompt}], "Be brief .")[0]
        assert h.shape == (len(ids), 32)
        torch.testing.assert_close(h, _hidden(tiny_llama, ids, LAYER), rtol=1e-4, atol=1e-5)


def test_one_string_is_refused(backend):
    with pytest.raises(TypeError, match="wrap it in a list"):
        residuals(backend, "Hi", LAYER)


def test_codes_and_token_activations_are_the_saes_encoding_of_those_residuals(backend, tiny_llama, tok):
    sae = random_sae(32, 16, "relu", seed=4, layer=LAYER, tied=False)
    codes = encode_prompts(backend, sae, PROMPTS, chat=False)
    torch.testing.assert_close(codes, sae.encode(residuals(backend, PROMPTS, LAYER, chat=False)))
    ids = encode_chat(tok, [{"role": "user", "content": PROMPTS[1]}])[0]
    pairs = token_activations(backend, sae, PROMPTS[1], index=5)
    assert [t for t, _ in pairs] == [tok.decode([int(i)]) for i in ids]
    expected = sae.encode(_hidden(tiny_llama, ids, LAYER))[:, 5]
    torch.testing.assert_close(torch.tensor([a for _, a in pairs]), expected, rtol=1e-4, atol=1e-5)
    unplaced = random_sae(32, 16, "relu", seed=4, tied=False)  # the same weights, no layer recorded
    with pytest.raises(ValueError, match="does not record its layer: pass layer="):
        encode_prompts(backend, unplaced, PROMPTS)
    torch.testing.assert_close(encode_prompts(backend, unplaced, PROMPTS, layer=LAYER, chat=False), codes)


def test_typical_norm_is_the_mean_norm_without_the_first_position(backend, tiny_llama, tok):
    texts = PROMPTS[1:]
    norms = [_hidden(tiny_llama, tok(t, return_tensors="pt")["input_ids"][0], LAYER)[1:].norm(dim=-1) for t in texts]
    assert typical_norm(backend, LAYER, texts) == pytest.approx(float(torch.cat(norms).mean()), rel=1e-5)


def test_a_steered_read_is_the_plan_applied_at_the_layer_and_only_inside_that_read(backend, tiny_llama, tok):
    sae = random_sae(32, 16, "relu", seed=4, layer=LAYER, tied=False)
    u = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(3)), dim=0)
    plain = message_codes(backend, sae, PROMPTS[1])
    steered = message_codes(backend, sae, PROMPTS[1], plan=SteeringPlan({LAYER: [Edit("add", u, 2.5)]}))
    ids, keep = message_positions(tok, [{"role": "user", "content": PROMPTS[1]}], None)
    expected = sae.encode(_hidden(tiny_llama, torch.tensor(ids), LAYER)[keep] + 2.5 * u)  # add: h + s u
    torch.testing.assert_close(steered.codes, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(steered.codes, plain.codes)
    torch.testing.assert_close(message_codes(backend, sae, PROMPTS[1]).codes, plain.codes)  # nothing left behind
