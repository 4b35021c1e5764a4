"""A plan crosses into vLLM's engine process as plain data and comes back the same: every edit applies
exactly as the original (add, clamp, pin by a per-feature rule and by a TopK SAE)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from steering.sae import TopKFeature
from steering.sae.core import SAE, FeatureRule
from steering.backends.payload import from_payload, to_payload
from steering.backends.vllm.engine import plan_fingerprint
from steering.steer.apply import apply_layer_edits
from steering.steer.plan import Edit, SteeringPlan

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
