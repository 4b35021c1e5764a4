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


def write_test_demo(folder, features=None, **extra):
    """A demo.yaml on the real embedded model with a test-written SAE (random directions) at layer 15."""
    import yaml

    from tests.helpers import random_sae, write_sae

    write_sae(folder / "sae" / "layer_15", random_sae(576, 256, "jumprelu", seed=11, layer=15))
    data = {
        "model": "embedded:smollm2-135m-instruct",
        "sae": {"source": "./sae", "format": "saelens", "path": "layer_{layer}"},
        "features": features if features is not None else [
            {"layer": 15, "index": 3, "strength": 0.0, "label": "test direction A"},
            {"layer": 15, "index": 4, "strength": 0.0, "label": "test direction B", "mode": "clamp"},
        ],
        "generation": {"max_new_tokens": 24, "temperature": 0.0, "top_p": 0.9, "repetition_penalty": 1.0, "seed": 0},
        "inspector_layer": 15,
        **extra,
    }
    (folder / "demo.yaml").write_text(yaml.safe_dump(data))
    return folder / "demo.yaml"


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`python app.py` on a free loopback port, serving the test demo; yields its URL."""
    import os

    from tests.helpers import start_app, stop_app

    demo = write_test_demo(tmp_path_factory.mktemp("app"))
    proc, url, _ = start_app(demo, {"HF_TOKEN": os.environ.get("HF_TOKEN", "hf_secret_test_value")}, timeout_s=180)
    yield url
    stop_app(proc)
