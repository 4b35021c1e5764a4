"""benchmarks/peers.py's own helpers (its cross-check on the real model: tests/integration/test_peers_benchmark.py)."""


import pytest

from tests.helpers import load_benchmark


@pytest.fixture(scope="module")
def peers():
    return load_benchmark("peers")


def test_first_difference(peers):
    assert peers.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert peers.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert peers.first_difference([1, 2], [1, 2, 3]) == 2
