"""Shared fixtures: the real embedded model (converted once per machine) and a tiny random Llama."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (model, tokenizer), fetched and converted on first use."""
    from steering.default_model import EMBEDDED_MODEL
    from steering.models import load_model

    return load_model(EMBEDDED_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_llama():
    """A randomly initialised 4-layer Llama (width 32): fast, for exact hook checks."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    return model
