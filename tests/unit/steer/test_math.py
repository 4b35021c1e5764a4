"""Steering modes against an independent float64 numpy computation of the note's formulas."""

import numpy as np
import pytest
import torch

from steering.sae import FeatureRule
from steering.steer import math as steer_math


def _unit(v):
    return v / np.linalg.norm(v)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 5, 16)) * 4
    u = _unit(rng.normal(size=16))
    return h, u


def _t(a):
    return torch.tensor(a, dtype=torch.float32)


def test_add_matches_formula(data):
    h, u = data
    got = steer_math.add(_t(h), _t(u), 7.5).numpy()
    np.testing.assert_allclose(got, h + 7.5 * u, atol=1e-5)


@pytest.mark.parametrize("s", [-3.0, 0.0, 12.0])
def test_clamp_sets_the_component_and_keeps_the_rest(data, s):
    h, u = data
    got = steer_math.clamp(_t(h), _t(u), s).numpy().astype(np.float64)
    expected = h - (h @ u)[..., None] * u + s * u
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got @ u, s, atol=1e-4)
    ortho = lambda x: x - (x @ u)[..., None] * u  # noqa: E731
    np.testing.assert_allclose(ortho(got), ortho(h), atol=1e-4)


def test_clamp_to_current_projection_is_identity(data):
    h, u = data
    one = h[0, 0]
    got = steer_math.clamp(_t(one), _t(u), float(one @ u)).numpy()
    np.testing.assert_allclose(got, one, atol=1e-5)


def test_pin_matches_formula_and_sets_the_feature_for_a_matched_encoder():
    rng = np.random.default_rng(1)
    d_model = 12
    h = rng.normal(size=(4, d_model))
    d = rng.normal(size=d_model) * 2.5  # raw decoder row, not unit
    w = d / (d @ d)  # encoder row with w . d = 1, so pinning sets the feature exactly
    b_enc, b_dec = 0.3, rng.normal(size=d_model) * 0.1
    rule = FeatureRule(index=0, w_enc=_t(w), b_enc=torch.tensor(b_enc), b_dec=_t(b_dec), threshold=torch.tensor(0.0), rule="jumprelu")
    a = rule.activation(_t(h))
    pre = (h - b_dec) @ w + b_enc
    np.testing.assert_allclose(a.numpy(), np.maximum(pre, 0) * (pre > 0), atol=1e-5)
    got = steer_math.pin(_t(h), _t(d), a, 5.0)
    np.testing.assert_allclose(got.numpy(), h + (5.0 - a.numpy())[:, None] * d, atol=1e-4)
    np.testing.assert_allclose(rule.activation(got).numpy(), 5.0, atol=1e-4)
    ablated = steer_math.pin(_t(h), _t(d), a, 0.0)
    assert torch.all(rule.activation(ablated) <= 1e-4)


def test_bf16_input_keeps_dtype_and_uses_float32_math(data):
    h, u = data
    hb = _t(h).bfloat16()
    got = steer_math.clamp(hb, _t(u), 2.0)
    assert got.dtype == torch.bfloat16
    expected = hb.float() - (hb.float() @ _t(u))[..., None] * _t(u) + 2.0 * _t(u)
    torch.testing.assert_close(got, expected.bfloat16())


def test_masked_keeps_unmasked_positions(data):
    h, u = data
    edited = steer_math.add(_t(h), _t(u), 1.0)
    mask = torch.tensor([True, False, True, False, False])
    got = steer_math.masked(_t(h), edited, mask)
    assert torch.equal(got[:, 1], _t(h)[:, 1]) and torch.equal(got[:, 0], edited[:, 0])
