"""The unit tier runs torch on one thread: its tensors are tiny, and on a small shared machine torch's
thread pool costs more than it saves (a tiny SAE training run: 0.07 s on one thread, 0.8 s on two
busy cores). Integration tests keep torch's default."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def saes(tmp_path):
    """Random 24-wide JumpReLU SAEs on layers 1 and 2, written under `tmp_path/saes` (see `layer_config`)."""
    from tests.helpers import random_sae, write_sae

    out = {}
    for layer in (1, 2):
        sae = random_sae(24, 40, "jumprelu", seed=layer, layer=layer)
        write_sae(tmp_path / "saes" / f"layer_{layer}", sae)
        out[layer] = sae
    return out


TINY_FEATURE = (1, 3)
"""(layer, index) of the one steering vector of `tiny_engine`."""


@pytest.fixture
def tiny_engine(tiny_llama):
    """An `Engine` on the hooks backend over the tiny random Llama and the in-memory tokenizer, with one
    steering vector (layer 1, feature 3) and greedy 8-token answers: the real engine, model-free."""
    from steering.backends.hooks import HooksBackend
    from steering.config import DemoConfig, FeatureSpec, GenerationSettings
    from steering.engine import Engine
    from steering.steer.vectors import SteeringVector, VectorSet
    from tests.helpers import tiny_tokenizer

    layer, index = TINY_FEATURE
    direction = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(7)), dim=0)
    vectors = VectorSet("tiny", {}, {(layer, index): SteeringVector(layer, index, direction, 1.0)})
    config = DemoConfig(model="tiny", features=(FeatureSpec(layer=layer, index=index, strength=0.0),),
                        generation=GenerationSettings(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0))
    with Engine(config, HooksBackend(tiny_llama, tiny_tokenizer(), log=lambda m: None), vectors,
                log=lambda m: None) as engine:
        yield engine
