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
