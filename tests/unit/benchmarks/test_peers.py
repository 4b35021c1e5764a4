"""benchmarks/peers.py's own helpers (its cross-check on the real model: tests/integration/test_peers_benchmark.py)."""

import importlib.util
import sys

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_benchmark", ROOT / "benchmarks" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_first_difference(peers):
    assert peers.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert peers.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert peers.first_difference([1, 2], [1, 2, 3]) == 2
