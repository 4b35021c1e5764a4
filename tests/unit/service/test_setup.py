"""steering.service.setup: share links (round trip, warnings, size limit) and feature keys; exact expectations."""

import pytest

from steering.config import GenerationSettings
from steering.keys import FeatureKey
from steering.service.setup import (
    MAX_QUERY_CHARS,
    SteeringSetup,
    from_query,
    parse_key,
    to_query,
)

DEFAULTS = SteeringSetup(strengths={"L15:3": 0.0, "L15:4": 10.0}, generation=GenerationSettings())


def _round_trip(setup):
    from urllib.parse import parse_qsl

    return from_query(dict(parse_qsl(to_query(setup, DEFAULTS))), DEFAULTS, n_layers=30, d_sae=256)


def test_link_round_trip_reproduces_the_setup():
    setup = SteeringSetup(
        strengths={"L15:3": 40.0, "L15:4": None, "L12:99": -7.5},
        mode="clamp",
        custom=((12, 99),),
        generation=GenerationSettings(max_new_tokens=100, temperature=0.0, top_p=0.5, repetition_penalty=1.3, seed=None),
        compare=True,
    )
    got, warnings = _round_trip(setup)
    assert warnings == []
    assert got == setup


def test_link_names_only_what_differs():
    assert to_query(DEFAULTS, DEFAULTS) == ""
    q = to_query(SteeringSetup(strengths={"L15:3": 40.0, "L15:4": 10.0}, generation=GenerationSettings()), DEFAULTS)
    assert q == "s=L15:3=40"


@pytest.mark.parametrize("params, name, why", [
    ({"s": "L15:3=abc"}, "s", "could not convert"),
    ({"s": "L15:3=nan"}, "s", "not a finite number"),
    ({"s": "L15:3=inf"}, "s", "not a finite number"),
    ({"s": "L99:3=1"}, "s", "layer 99 is outside this model (0..29)"),
    ({"s": "L15:999=1"}, "s", "feature 999 is outside the SAE (0..255)"),
    ({"s": "15:3=1"}, "s", "is not a feature key: write L<layer>:<index>, e.g. L15:123"),
    ({"add": "L1.5:3"}, "add", "is not a feature key"),
    ({"mode": "sideways"}, "mode", "use one of add, clamp, pin, own"),
    ({"tokens": "-5"}, "tokens", "is not a whole number"),
    ({"tokens": "0"}, "tokens", "max_new_tokens"),
    ({"temp": "-1"}, "temp", "temperature"),
    ({"top_p": "2"}, "top_p", "top_p"),
    ({"seed": "1e9"}, "seed", "is not a whole number"),
    ({"compare": "yes"}, "compare", "use 1 or 0"),
])
def test_bad_parameters_warn_and_keep_the_defaults(params, name, why):
    setup, warnings = from_query(params, DEFAULTS, n_layers=30, d_sae=256)
    assert setup == DEFAULTS
    assert len(warnings) == 1 and f"parameter {name}=" in warnings[0] and why in warnings[0]


def test_good_parameters_survive_beside_bad_ones():
    setup, warnings = from_query({"s": "L15:3=12", "mode": "nope", "temp": "0.3", "__theme": "dark"}, DEFAULTS, 30, 256)
    assert setup.strengths[FeatureKey(15, 3)] == 12.0 and setup.generation.temperature == 0.3 and setup.mode is None
    assert len(warnings) == 1 and "mode" in warnings[0]


def test_oversized_link_is_refused_whole():
    setup, warnings = from_query({"s": "L15:3=1," * 400}, DEFAULTS, 30, 256)
    assert setup == DEFAULTS and f"limit {MAX_QUERY_CHARS}" in warnings[0]


def test_parse_key():
    assert parse_key("L15:123") == (15, 123)
    with pytest.raises(ValueError, match="not a feature key"):
        parse_key("L15-123")
