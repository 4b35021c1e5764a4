"""Property-based tests (hypothesis), each with a fixed, derandomised example budget.

Config parsing, share-link parsing, the steering math and text cleaning get arbitrary input;
each property says what must hold for every input, not for chosen examples.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from steering.config import ConfigError, DemoConfig, GenerationSettings, parse_config
from steering.service.limits import Limits, UserError, check_message, clean_text
from steering.service.links import from_query, to_query
from steering.service.setup import SteeringSetup
from steering.steer import math as steer_math

BUDGET = settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULTS = SteeringSetup(strengths={"L15:3": 0.0, "L15:4": 10.0}, generation=GenerationSettings())

# ---- config parsing ----------------------------------------------------------------------------

CONFIG_KEYS = ["model", "sae", "features", "generation", "inspector_layer", "device", "dtype", "mode", "system_prompt", "vectors",
               "backend", "llm_name", "clamp_intensity", "steer_prompt", "steer_special_tokens", "steer_generated_only",
               "source", "format", "path", "revision", "k", "layer", "index", "strength", "label", "range",
               "max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["embedded:smollm2-135m-instruct", "./sae", "saelens", "layer_{layer}", "add", "clamp", "pin", "cpu", "float32", "auto", "L15:3"]),
    st.text(max_size=20),
)
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=8), st.integers()), inner, max_size=5)),
    max_leaves=25,
)


@BUDGET
@given(st.dictionaries(st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=10)), nested, max_size=8))
def test_parse_config_raises_only_config_error(data):
    try:
        config = parse_config(data, Path("/nonexistent-base"))
    except ConfigError as exc:
        assert str(exc).strip()  # every refusal says what is wrong
    else:
        assert isinstance(config, DemoConfig) and config.model


@BUDGET
@given(st.fixed_dictionaries({"model": st.just("embedded:smollm2-135m-instruct")}, optional={
    "generation": st.fixed_dictionaries({}, optional={k: scalars for k in ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")}),
    "mode": scalars, "inspector_layer": scalars, "device": scalars, "dtype": scalars, "system_prompt": scalars,
}))
def test_parse_config_near_valid_input(data):
    """Mostly valid configs with one field or another off: accepted whole or refused with ConfigError."""
    try:
        config = parse_config(data, Path("/nonexistent-base"))
    except ConfigError:
        return
    g = config.generation
    assert g.max_new_tokens >= 1 and g.temperature >= 0 and 0 < g.top_p <= 1 and g.repetition_penalty > 0
    assert all(math.isfinite(v) for v in (g.temperature, g.top_p, g.repetition_penalty))


# ---- share links -------------------------------------------------------------------------------

PARAMS = ["s", "m", "mode", "add", "tokens", "temp", "top_p", "rep", "seed", "compare"]
keys = st.builds(lambda layer, index: f"L{layer}:{index}", st.integers(0, 40), st.integers(0, 300))
number = st.one_of(st.integers(-10**8, 10**8).map(str), st.floats(-1e6, 1e6, allow_nan=False).map(repr),
                   st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "", " ", "random", "off", "1", "0"]))
values = {
    "s": st.lists(st.builds(lambda k, v: f"{k}={v}", keys, number), min_size=1, max_size=4).map(",".join),
    "add": st.lists(keys, min_size=1, max_size=4).map(",".join),
    "m": st.lists(st.builds(lambda k, m: f"{k}={m}", keys, st.sampled_from(["add", "clamp", "pin", "own", "x;y=1", ""])),
                  min_size=1, max_size=4).map(",".join),
    "mode": st.sampled_from(["add", "clamp", "pin", "own", "sideways", ""]),
    "tokens": number, "temp": number, "top_p": number, "rep": number, "seed": number, "compare": number,
}
structured = st.dictionaries(st.sampled_from(PARAMS), st.just(None), max_size=9).flatmap(
    lambda d: st.fixed_dictionaries({k: values[k] for k in d})
)
arbitrary = st.dictionaries(st.one_of(st.sampled_from(PARAMS), st.text(max_size=10)), st.text(max_size=60), max_size=9)


def _close(a: SteeringSetup, b: SteeringSetup) -> bool:
    """Equal, with floats equal to the 6 significant digits a link writes."""
    def near(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-9)
        return x == y

    return (a.strengths.keys() == b.strengths.keys() and all(near(a.strengths[k], b.strengths[k]) for k in a.strengths)
            and a.mode == b.mode and a.modes == b.modes and a.custom == b.custom and a.compare == b.compare
            and all(near(x, y) for x, y in zip(a.generation.to_dict().values(), b.generation.to_dict().values())))


@BUDGET
@given(st.one_of(structured, arbitrary))
def test_share_link_parsing_never_raises_and_round_trips(params):
    setup, warnings = from_query(params, DEFAULTS, n_layers=30, d_sae=256)
    assert isinstance(setup, SteeringSetup) and all(isinstance(w, str) and len(w) < 400 for w in warnings)
    if warnings:
        return
    again, warnings2 = from_query(dict(parse_qsl(to_query(setup, DEFAULTS), keep_blank_values=True)), DEFAULTS, n_layers=30, d_sae=256)
    assert warnings2 == [] and _close(again, setup)


@BUDGET
@given(st.dictionaries(st.sampled_from(PARAMS), st.text(min_size=200, max_size=600), min_size=4, max_size=9))
def test_oversized_share_links_fall_back_to_the_defaults(params):
    setup, warnings = from_query(params, DEFAULTS, n_layers=30, d_sae=256)
    if sum(len(k) + len(v) + 2 for k, v in params.items()) > 2048:
        assert setup == DEFAULTS and "too long" in warnings[0]


# ---- steering math -----------------------------------------------------------------------------

DTYPES = {"float32": (torch.float32, 1e12, 1e-6), "float16": (torch.float16, 200.0, 2e-3), "bfloat16": (torch.bfloat16, 1e12, 1.6e-2)}


@st.composite
def steer_case(draw):
    name = draw(st.sampled_from(sorted(DTYPES)))
    dtype, magnitude, eps = DTYPES[name]
    lead = tuple(draw(st.lists(st.integers(1, 4), max_size=3)))
    d = draw(st.integers(1, 48))
    scale = draw(st.sampled_from([1.0, magnitude ** 0.5, magnitude]))
    h = draw(hnp.arrays(np.float64, lead + (d,), elements=st.floats(-scale, scale, allow_nan=False)))
    u = draw(hnp.arrays(np.float64, (d,), elements=st.floats(-1, 1, allow_nan=False)).filter(lambda v: np.linalg.norm(v) > 1e-2))
    s = draw(st.floats(-scale, scale, allow_nan=False))
    u = u / np.linalg.norm(u)
    return name, torch.tensor(h, dtype=dtype), torch.tensor(u, dtype=torch.float32), float(s), eps


def _tol(h: torch.Tensor, s: float, eps: float) -> np.ndarray:
    """Rounding error of one edit: the dtype's epsilon times the magnitudes involved, per position,
    and at least the dtype's subnormal spacing per element (float16 cannot hold 1e-8 at all)."""
    mag = h.double().abs().sum(-1).numpy() + abs(s) + 1e-30
    subnormal_spacing = torch.finfo(h.dtype).smallest_normal * torch.finfo(h.dtype).eps
    return 4 * eps * mag + h.shape[-1] * subnormal_spacing


@BUDGET
@given(steer_case())
@example(("float16", torch.tensor([0.0], dtype=torch.float16), torch.tensor([1.0]), 1e-08, 0.002))  # found in CI
def test_clamp_sets_the_projection_to_s_and_keeps_shape_and_dtype(case):
    name, h, u, s, eps = case
    out = steer_math.clamp(h, u, s)
    assert out.dtype == h.dtype and out.shape == h.shape and torch.isfinite(out).all()
    proj = out.double().numpy() @ u.double().numpy()
    assert np.all(np.abs(proj - s) <= _tol(h, s, eps)), name


@BUDGET
@given(steer_case())
def test_add_moves_along_u_only(case):
    name, h, u, s, eps = case
    out = steer_math.add(h, u, s)
    assert out.dtype == h.dtype and out.shape == h.shape and torch.isfinite(out).all()
    diff = out.double().numpy() - h.double().numpy()
    ud = u.double().numpy()
    along = diff @ ud
    across = diff - along[..., None] * ud
    tol = _tol(h, s, eps)
    assert np.all(np.abs(along - s) <= tol) and np.all(np.linalg.norm(across, axis=-1) <= tol), name


@BUDGET
@given(steer_case(), st.floats(-50, 50, allow_nan=False))
def test_pin_moves_along_d_by_t_minus_a(case, t):
    name, h, u, _, eps = case
    norm = 3.0
    a = (h.float() @ u).clamp(-1e3, 1e3)  # any activation the rule may return
    out = steer_math.pin(h, u * norm, a, t)
    assert out.dtype == h.dtype and out.shape == h.shape and torch.isfinite(out).all()
    along = (out.double().numpy() - h.double().numpy()) @ u.double().numpy()
    want = (t - a.double().numpy()) * norm
    assert np.all(np.abs(along - want) <= _tol(h, abs(t) + 1e3 * norm, eps)), name


# ---- text cleaning -----------------------------------------------------------------------------

any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=300)


@BUDGET
@given(any_text)
def test_clean_text_never_raises_and_leaves_no_control_characters(text):
    out = clean_text(text)
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in out)
    out.encode("utf-8")  # no lone surrogates left
    assert unicodedata.is_normalized("NFC", out)


@BUDGET
@given(st.one_of(any_text, st.text(min_size=2000, max_size=2100)))
def test_check_message_accepts_or_refuses_with_a_user_error(text):
    try:
        out = check_message(text, Limits())
    except UserError as exc:
        assert "empty" in str(exc) or "the limit is 2048" in str(exc)
    else:
        assert out and out == out.strip() and len(out) <= 2048


@pytest.mark.parametrize("value", [None, 3, b"bytes", ["list"]])
def test_clean_text_refuses_non_text_with_a_user_error(value):
    with pytest.raises(UserError, match="expected text"):
        clean_text(value)


def test_share_link_with_the_largest_tokens_and_seed_round_trips():
    setup, warnings = from_query({"tokens": "16384", "seed": str(2**63 - 1)}, DEFAULTS, n_layers=30, d_sae=256)
    assert warnings == []
    again, warnings = from_query(dict(parse_qsl(to_query(setup, DEFAULTS))), DEFAULTS, n_layers=30, d_sae=256)
    assert warnings == [] and again == setup
