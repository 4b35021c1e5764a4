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


def _norm(x):
    return np.linalg.norm(x, axis=-1)


def _angle_deg(x, u):
    return np.degrees(np.arccos(np.clip((x @ u) / _norm(x), -1, 1)))


@pytest.mark.parametrize("s", [-20.0, 0.0, 5.0, 40.0])
def test_norm_add_matches_formula_and_keeps_the_norm(data, s):
    h, u = data
    got = steer_math.norm_add(_t(h), _t(u), s).numpy().astype(np.float64)
    moved = h + s * u
    np.testing.assert_allclose(got, moved * (_norm(h) / _norm(moved))[..., None], atol=1e-4)
    np.testing.assert_allclose(_norm(got), _norm(h), rtol=1e-5)
    if s > 0:
        assert np.all(got @ u > h @ u)  # it still moves toward u


def test_norm_add_where_the_sum_vanishes_leaves_h():
    u = _unit(np.arange(1.0, 9.0))
    h = -3.0 * u
    got = steer_math.norm_add(_t(h), _t(u), 3.0).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, h, atol=1e-6)


def _rotate(h, u, deg):
    """Independent float64 construction: an orthonormal basis (u, v) of the plane by Gram-Schmidt."""
    perp = h - (h @ u)[..., None] * u
    v = perp / _norm(perp)[..., None]
    t = np.radians(deg)
    return _norm(h)[..., None] * (np.cos(t) * u + np.sin(t) * v)


@pytest.mark.parametrize("deg", [0.0, 30.0, 80.0, 90.0, 135.0, 180.0])
def test_angular_reaches_the_angle_keeps_the_norm_and_stays_in_the_plane(data, deg):
    h, u = data
    got = steer_math.angular(_t(h), _t(u), deg).numpy().astype(np.float64)
    np.testing.assert_allclose(got, _rotate(h, u, deg), atol=1e-4)
    np.testing.assert_allclose(_norm(got), _norm(h), rtol=1e-5)
    np.testing.assert_allclose(_angle_deg(got, u), deg, atol=0.05)
    # in the plane of h and u: what is orthogonal to both stays zero
    perp = h - (h @ u)[..., None] * u
    v = perp / _norm(perp)[..., None]
    rest = got - (got @ u)[..., None] * u - np.sum(got * v, axis=-1)[..., None] * v
    np.testing.assert_allclose(rest, 0, atol=1e-4)


def test_angular_at_the_residuals_own_angle_is_identity(data):
    h, u = data
    one = h[0, 0]
    got = steer_math.angular(_t(one), _t(u), float(_angle_deg(one, u))).numpy()
    np.testing.assert_allclose(got, one, atol=1e-4)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_angular_with_h_parallel_to_u_has_no_nans(sign):
    u = _unit(np.array([3.0, -1.0, 2.0, 0.5, 4.0, 0.1]))
    h = np.stack([sign * 7.0 * u, np.zeros_like(u)])
    got = steer_math.angular(_t(h), _t(u), 60.0).numpy().astype(np.float64)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(_norm(got), [7.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(_angle_deg(got[:1], u), 60.0, atol=0.01)
    k = np.argmin(np.abs(u))  # the documented fallback plane: u and e_k's part orthogonal to u
    v = np.eye(6)[k] - u[k] * u
    v /= np.linalg.norm(v)
    np.testing.assert_allclose(got[0], 7.0 * (np.cos(np.pi / 3) * u + np.sin(np.pi / 3) * v), atol=1e-5)


def test_angular_adaptive_rotates_only_positions_leaning_toward_u(data):
    h, u = data
    got = steer_math.angular_adaptive(_t(h), _t(u), 70.0).numpy().astype(np.float64)
    lean = (h @ u) > 0
    assert lean.any() and (~lean).any()
    np.testing.assert_allclose(got[lean], _rotate(h, u, 70.0)[lean], atol=1e-4)
    np.testing.assert_allclose(got[~lean], h[~lean], atol=1e-6)
    np.testing.assert_allclose(_norm(got), _norm(h), rtol=1e-5)


@pytest.mark.parametrize("s", [-5.0, 0.0, 3.0, 50.0])
def test_cap_raises_the_component_to_the_floor_and_never_lowers_it(data, s):
    h, u = data
    got = steer_math.cap(_t(h), _t(u), s).numpy().astype(np.float64)
    proj = h @ u
    np.testing.assert_allclose(got, h + np.maximum(0.0, s - proj)[..., None] * u, atol=1e-4)
    np.testing.assert_allclose(got @ u, np.maximum(proj, s), atol=1e-4)
    low = proj < s
    np.testing.assert_allclose(got[~low], h[~low], atol=1e-6)  # already above the floor: untouched
    ortho = lambda x: x - (x @ u)[..., None] * u  # noqa: E731
    np.testing.assert_allclose(ortho(got), ortho(h), atol=1e-4)


def test_conditional_keeps_the_edit_only_where_the_feature_fires(data):
    h, u = data
    a = np.random.default_rng(3).normal(size=h.shape[:-1]) * 2
    edited = steer_math.add(_t(h), _t(u), 9.0)
    got = steer_math.conditional(_t(h), edited, _t(a), 0.5).numpy()
    fires = a > 0.5
    assert fires.any() and (~fires).any()
    np.testing.assert_allclose(got[fires], h[fires] + 9.0 * u, atol=1e-5)
    np.testing.assert_array_equal(got[~fires], _t(h).numpy()[~fires])


@pytest.mark.parametrize("fn,s", [(steer_math.norm_add, 4.0), (steer_math.angular, 70.0), (steer_math.angular_adaptive, 70.0),
                                  (steer_math.cap, 2.0)])
def test_new_modes_keep_bf16_dtype(data, fn, s):
    h, u = data
    hb = _t(h).bfloat16()
    got = fn(hb, _t(u), s)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, fn(hb.float(), _t(u), s).bfloat16())
