"""steering.model.layers: the decoder blocks of every supported model family, and the steering hook
lands on the decoder layer's output.

Each model is small and randomly initialised from its transformers config. The library's
steering is compared with a manual residual edit through the test's own hook on the module
the test expects for that family.
"""

import pytest
import torch
import transformers as tf
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from steering.model.layers import decoder_layers, num_layers
from steering.steer.hooks import steering
from steering.steer.plan import Edit, SteeringPlan

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
FAMILIES = {
    "llama-3": (tf.LlamaConfig, tf.LlamaForCausalLM, SMALL, "model.layers"),
    "qwen2.5": (tf.Qwen2Config, tf.Qwen2ForCausalLM, SMALL, "model.layers"),
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, {**SMALL, "head_dim": 8}, "model.layers"),
    "gemma-2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, {**SMALL, "head_dim": 8}, "model.layers"),
    "gemma-3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, {**SMALL, "head_dim": 8}, "model.layers"),
    "mistral": (tf.MistralConfig, tf.MistralForCausalLM, SMALL, "model.layers"),
    "gpt-2": (tf.GPT2Config, tf.GPT2LMHeadModel, dict(vocab_size=128, n_embd=32, n_layer=3, n_head=4, n_positions=64), "transformer.h"),
}
IDS = torch.tensor([[3, 17, 42, 5, 99, 8, 23]])


def _build(name):
    config_cls, model_cls, kwargs, path = FAMILIES[name]
    torch.manual_seed(0)
    model = model_cls(config_cls(**kwargs)).eval()
    expected = model
    for part in path.split("."):
        expected = getattr(expected, part)
    return model, expected


def _unit(d):
    v = torch.randn(d, generator=torch.Generator().manual_seed(1))
    return v / v.norm()


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_library_steering_equals_a_manual_residual_edit(family, mode):
    model, expected_layers = _build(family)
    assert decoder_layers(model) is expected_layers
    d = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
    u, s, layer = _unit(d), 7.0, 1
    with torch.no_grad():
        plain = model(input_ids=IDS).logits
        with steering(model, SteeringPlan({layer: [Edit(mode, u, s)]})):
            steered = model(input_ids=IDS).logits

        def manual(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h = h + s * u if mode == "add" else h - (h @ u).unsqueeze(-1) * u + s * u
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = expected_layers[layer].register_forward_hook(manual)
        try:
            edited = model(input_ids=IDS).logits
        finally:
            handle.remove()
    torch.testing.assert_close(steered, edited, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(steered, plain, atol=1e-3)


def test_decoder_layers_on_tiny_gpt2() -> None:
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2)
    lm = GPT2LMHeadModel(config)
    assert decoder_layers(lm) is lm.transformer.h and num_layers(lm) == 2
    bare = GPT2Model(config)
    assert decoder_layers(bare) is bare.h


def test_decoder_layers_error_is_clear() -> None:
    with pytest.raises(ValueError, match="Linear.*DECODER_LAYER_PATHS"):
        decoder_layers(torch.nn.Linear(2, 2))
