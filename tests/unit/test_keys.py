"""steering/keys.py: FeatureKey, the one codec for `L15:123`."""

from __future__ import annotations

import pytest

from steering.keys import FeatureKey


def test_format():
    k = FeatureKey(15, 123)
    assert str(k) == "L15:123" and f"{k}" == "L15:123" and f"{k:>9}" == "  L15:123" and format(k, "<8") == "L15:123 "
    assert "{}".format(FeatureKey(0, 0)) == "L0:0"


def test_is_a_tuple():
    k = FeatureKey(15, 123)
    layer, index = k
    assert (layer, index) == (k.layer, k.index) == (15, 123)
    assert k == (15, 123) and hash(k) == hash((15, 123))
    assert sorted([FeatureKey(15, 9), FeatureKey(3, 200), FeatureKey(15, 1)]) == [(3, 200), (15, 1), (15, 9)]


@pytest.mark.parametrize("text, key", [("L15:123", (15, 123)), ("  L0:0\n", (0, 0)), ("L9999:999999999", (9999, 999999999)), ("L015:007", (15, 7))])
def test_parse(text, key):
    assert FeatureKey.parse(text) == key and isinstance(FeatureKey.parse(text), FeatureKey)


def test_parse_passes_keys_and_pairs_through():
    k = FeatureKey(1, 2)
    assert FeatureKey.parse(k) is k
    assert FeatureKey.parse((1, 2)) == k and isinstance(FeatureKey.parse((1, 2)), FeatureKey)


@pytest.mark.parametrize("key", [FeatureKey(0, 0), FeatureKey(15, 123), FeatureKey(31, 131071)])
def test_round_trip(key):
    assert FeatureKey.parse(str(key)) == key
    assert str(FeatureKey.parse(f"{key}")) == str(key)


@pytest.mark.parametrize(
    "bad",
    ["15:123", "L15", "L15:", "l15:3", "L-1:2", "L15:-3", "L1.5:2", "L15: 3", "L15:3x", "L99999:1", "", "Lx:y", 15, None, 1.5,
     [15, 123], (15,), (1, 2, 3), (True, 2), (1, "2"), (1.0, 2)],
)  # fmt: skip
def test_bad_input_names_the_value(bad):
    with pytest.raises(ValueError) as info:
        FeatureKey.parse(bad)
    assert str(info.value) == f"{bad!r} is not a feature key: write L, the layer, a colon and the feature index, e.g. L15:123"
