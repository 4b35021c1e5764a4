"""A plan crosses into vLLM's engine process as plain data and comes back the same: every edit applies
exactly as the original (every mode, pin by a per-feature rule and by a TopK SAE, conditions read by either)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from steering.sae import TopKFeature
from steering.sae.core import SAE, FeatureRule
from steering.backends.payload import from_payload, to_payload
from steering.backends.vllm.engine import plan_fingerprint
from steering.keys import FeatureKey
from steering.steer.apply import apply_layer, apply_layer_edits
from steering.steer.plan import Edit, Gate, SteeringPlan

D, F = 8, 16


def _sae() -> SAE:
    g = torch.Generator().manual_seed(0)
    return SAE(torch.randn(D, F, generator=g), torch.randn(F, D, generator=g), torch.randn(F, generator=g) * 0.1,
               torch.randn(D, generator=g) * 0.1, "topk", k=3)


def _plan(sae: SAE) -> SteeringPlan:
    g = torch.Generator().manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(3, D, generator=g), dim=-1)
    rule = FeatureRule(5, torch.randn(D, generator=g), torch.tensor(0.2), torch.randn(D, generator=g),
                       torch.tensor(0.1), "jumprelu")
    d = sae.W_dec[4]
    return SteeringPlan({
        2: [Edit("add", u[0], 3.0, 1.5, label="a"), Edit("clamp", u[1], -2.0)],
        5: [Edit("pin", u[2], 1.5, 2.0, rule.activation), Edit("pin", d / d.norm(), 4.0, float(d.norm()), TopKFeature(sae, 4))],
    }, steer_special_tokens=False, generated_only=True)


def test_round_trip_applies_the_same_edits():
    sae = _sae()
    plan = _plan(sae)
    payload = to_payload(plan, lambda layer: {"folder": "/somewhere", "format": "saelens", "k": 3})
    json.dumps(payload)  # plain data only: what msgpack carries to the worker
    opened = []
    back = from_payload(json.loads(json.dumps(payload)), lambda source: opened.append(source) or sae)
    assert opened == [{"folder": "/somewhere", "format": "saelens", "k": 3, "layer": 5}]
    assert back.layers == plan.layers and not back.steer_special_tokens and back.generated_only
    h = torch.randn(4, D, generator=torch.Generator().manual_seed(2))
    for layer in plan.layers:
        assert torch.allclose(apply_layer_edits(back.edits[layer], h), apply_layer_edits(plan.edits[layer], h), atol=1e-6)


def _every_mode_plan(sae: SAE) -> SteeringPlan:
    """Each new mode once, two of them gated: by a per-feature rule read at layer 1, by the TopK SAE at layer 4."""
    g = torch.Generator().manual_seed(3)
    u = torch.nn.functional.normalize(torch.randn(5, D, generator=g), dim=-1)
    rule = FeatureRule(2, torch.randn(D, generator=g), torch.tensor(0.0), torch.zeros(D), None, "relu")
    by_rule = Gate(FeatureKey(1, 2), 0.1, rule.activation)
    by_sae = Gate(FeatureKey(4, 6), 0.0, TopKFeature(sae, 6))
    return SteeringPlan({
        1: [Edit("norm_add", u[0], 4.0)],
        4: [Edit("angular", u[1], 80.0, gate=by_rule), Edit("angular_adaptive", u[2], 60.0),
            Edit("cap", u[3], 1.5, gate=by_sae), Edit("add", u[4], 2.0, gate=by_rule)],
    })


def test_round_trip_of_every_mode_and_condition_applies_the_same_edits():
    sae = _sae()
    plan = _every_mode_plan(sae)
    payload = to_payload(plan, lambda layer: {"folder": f"/saes/{layer}", "format": "saelens", "k": 3})
    opened = []
    back = from_payload(json.loads(json.dumps(payload)), lambda source: opened.append(source) or sae)
    assert opened == [{"folder": "/saes/4", "format": "saelens", "k": 3, "layer": 4}]
    assert back.layers == plan.layers == [1, 4] and back.hooked_layers == [1, 4]
    assert [[(e.mode, e.strength) for e in back.edits[k]] for k in (1, 4)] == \
        [[(e.mode, e.strength) for e in plan.edits[k]] for k in (1, 4)]
    assert [(e.gate.key, e.gate.above) for e in back.edits[4] if e.gate] == [(FeatureKey(1, 2), 0.1), (FeatureKey(4, 6), 0.0),
                                                                              (FeatureKey(1, 2), 0.1)]
    g = torch.Generator().manual_seed(4)
    h1, h4 = torch.randn(2, 6, D, generator=g) * 2, torch.randn(2, 6, D, generator=g) * 2
    outs = []
    for p in (plan, back):
        values = {}
        outs.append((apply_layer(p, 1, h1, values), apply_layer(p, 4, h4, values)))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(outs[0][1], h4, atol=1e-3)
    with pytest.raises(ValueError, match="needs the SAE's folder"):
        to_payload(plan)  # the TopK condition has no folder to travel with


def test_a_topk_pin_without_the_sae_folder_is_refused():
    plan = _plan(_sae())
    with pytest.raises(ValueError, match="needs the SAE's folder"):
        to_payload(plan)


def test_fingerprint_is_shared_by_equal_plans_only():
    u = torch.nn.functional.normalize(torch.ones(D), dim=0)
    one = to_payload(SteeringPlan({3: [Edit("add", u, 2.0)]}))
    same = to_payload(SteeringPlan({3: [Edit("add", u.clone(), 2.0)]}))
    other = to_payload(SteeringPlan({3: [Edit("add", u, 2.5)]}))
    assert plan_fingerprint(None) is None
    assert plan_fingerprint(one) == plan_fingerprint(same) != plan_fingerprint(other)


def test_backend_vllm_without_vllm_installed_says_how_to_install(monkeypatch, tmp_path):
    from steering.config import parse_config
    from steering.engine import Engine

    monkeypatch.setitem(sys.modules, "vllm", None)  # what a missing package looks like to `import`
    config = parse_config({"model": "m", "backend": "vllm"})
    with pytest.raises(RuntimeError, match=r"backend: vllm needs vLLM and interp-engine.*tools/install_vllm.sh"):
        Engine.from_config(config)
