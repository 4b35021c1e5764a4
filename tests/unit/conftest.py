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
