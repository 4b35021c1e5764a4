"""steering/steer/apply.py: pins on TopK SAEs, several pins on one SAE sharing one encoder product per layer."""

import pytest
import torch

from steering.sae import TopKFeature
from steering.steer import math as steer_math
from steering.keys import FeatureKey
from steering.steer.apply import apply_layer, apply_layer_edits
from steering.steer.plan import Edit, Gate, SteeringPlan
from tests.helpers import random_sae


def test_pins_sharing_one_encode_equal_pins_encoding_each_time():
    """Three pins on one TopK SAE, then a clamp and a pin again: the shared-product path against
    an independent loop that re-encodes the edited residual before every pin."""
    sae = random_sae(32, 64, "topk", seed=4, tied=False)
    h = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(2)) * 3
    specs = [("pin", 5, 1.5), ("pin", 9, 0.0), ("pin", 17, 2.0), ("clamp", 3, 0.7), ("pin", 5, 0.4)]
    edits = []
    for mode, i, s in specs:
        d = sae.W_dec[i]
        edits.append(Edit(mode, d / d.norm(), s, float(d.norm()), TopKFeature(sae, i) if mode == "pin" else None))
    expected = h.clone()
    for mode, i, s in specs:
        d = sae.W_dec[i]
        if mode == "pin":
            expected = steer_math.pin(expected, d, sae.encode(expected)[..., i], s)
        else:
            expected = steer_math.clamp(expected, d / d.norm(), s)
    got = apply_layer_edits(edits, h)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(got, h, atol=1e-2)  # the pins did move the residual


def test_bfloat16_residuals_re_encode_every_pin():
    sae = random_sae(32, 64, "topk", seed=5, tied=False)
    h = (torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(3)) * 3).to(torch.bfloat16)
    edits = [Edit("pin", sae.W_dec[i] / sae.W_dec[i].norm(), 1.0, float(sae.W_dec[i].norm()), TopKFeature(sae, i)) for i in (1, 2)]
    expected = h
    for e in edits:
        expected = e.apply(expected)
    assert torch.equal(apply_layer_edits(edits, h), expected)


def _unit(seed, d=16):
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_a_same_layer_condition_reads_the_residual_before_that_layers_edits():
    """The first edit pushes every position along the condition's own direction; the gated second edit still
    follows the condition as read on the unedited residual."""
    h = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(0)) * 2
    w, u = _unit(1), _unit(2)
    read = lambda x: torch.relu(x @ w)  # noqa: E731
    plan = SteeringPlan({4: [Edit("add", w, 50.0), Edit("cap", u, 3.0, gate=Gate(FeatureKey(4, 0), 1.0, read))]})
    values = {}
    got = apply_layer(plan, 4, h, values)
    fires = read(h) > 1.0
    assert fires.any() and (~fires).any()
    first = h + 50.0 * w
    expected = torch.where(fires.unsqueeze(-1), steer_math.cap(first, u, 3.0), first)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(values[FeatureKey(4, 0)], read(h))


def test_an_earlier_layers_condition_carries_over_within_one_forward():
    g = torch.Generator().manual_seed(1)
    h2, h5 = torch.randn(1, 6, 16, generator=g), torch.randn(1, 6, 16, generator=g)
    w, u = _unit(3), _unit(4)
    read = lambda x: x @ w  # noqa: E731
    plan = SteeringPlan({5: [Edit("angular", u, 70.0, gate=Gate(FeatureKey(2, 0), 0.0, read))]})
    values = {}
    assert apply_layer(plan, 2, h2, values) is h2  # only read there
    got = apply_layer(plan, 5, h5, values)
    fires = (h2 @ w) > 0
    assert fires.any() and (~fires).any()
    torch.testing.assert_close(got, torch.where(fires.unsqueeze(-1), steer_math.angular(h5, u, 70.0), h5))


def test_a_gated_pin_falls_back_to_encoding_and_a_missing_condition_is_an_error():
    sae = random_sae(16, 32, "topk", seed=6, tied=False)
    h = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(2)) * 3
    d = sae.W_dec[3]
    read = lambda x: x @ _unit(5)  # noqa: E731
    gated = Edit("pin", d / d.norm(), 2.0, float(d.norm()), TopKFeature(sae, 3), gate=Gate(FeatureKey(1, 0), 0.0, read))
    plain = Edit("pin", sae.W_dec[7] / sae.W_dec[7].norm(), 1.0, float(sae.W_dec[7].norm()), TopKFeature(sae, 7))
    got = apply_layer_edits([gated, plain], h, {FeatureKey(1, 0): read(h)})
    first = torch.where((read(h) > 0).unsqueeze(-1), steer_math.pin(h, d, sae.encode(h)[..., 3], 2.0), h)
    expected = steer_math.pin(first, sae.W_dec[7], sae.encode(first)[..., 7], 1.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="the condition on L1:0 was not read before this edit"):
        apply_layer_edits([gated], h)
