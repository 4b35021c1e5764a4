"""Residual vectors for the small SAEs of `tests.unit.sae.writers`."""

import pytest
import torch

from tests.unit.sae.writers import D, randn


@pytest.fixture
def x() -> torch.Tensor:
    return randn(4, 3, D, seed=99)  # (B, T, d)
