"""steering/steer/apply.py: pins on TopK SAEs, several pins on one SAE sharing one encoder product per layer."""

import torch

from steering.sae import TopKFeature
from steering.steer import math as steer_math
from steering.steer.apply import apply_layer_edits
from steering.steer.plan import Edit
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
