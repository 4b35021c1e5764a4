"""benchmarks/peers.py's in-process approaches agree with each other on the real model.

The PyPI peers (steering-vectors, repeng) need their own virtual environments, too slow to build
here; `python benchmarks/peers.py` cross-checks them. This checks the per-request-hooks approach
(the original project's way) against this library's, on the benchmark's own vector and prompt.
"""

from __future__ import annotations

import pytest
import torch

from steering.config import load_config
from steering.model.chat_template import encode_chat
from steering.steer.plan import Edit, SteeringPlan
from steering.steer.vectors import load_vectors
from tests.helpers import ROOT, load_benchmark


@pytest.fixture(scope="module")
def peers():
    return load_benchmark("peers")


def test_per_request_hooks_give_our_greedy_ids(smollm2, peers):
    model, tok = smollm2
    feature = next(f for f in load_config(ROOT / "demo.yaml").features if f.enabled)
    u = load_vectors(ROOT / "steering_vectors.pt").get(feature.layer, feature.index).direction
    ids = encode_chat(tok, [{"role": "user", "content": peers.PROMPT}])
    kwargs = peers.generate_kwargs(ids, 6, tok.eos_token_id)  # steering changes the 2nd token already
    layer = model.model.layers[feature.layer]
    ours = peers.ours_generate(model, SteeringPlan({feature.layer: [Edit("add", u, 40.0)]}), kwargs)  # attaches the dispatcher
    hooks_before = len(layer._forward_hooks)
    per_request = peers.per_request_generate(model, feature.layer, u, 40.0, kwargs)
    plain = peers.plain_generate(model, kwargs)

    assert ours.shape[1] - ids.shape[1] == 6  # min_new_tokens = max_new_tokens: the exact count
    assert torch.equal(per_request, ours)
    assert not torch.equal(ours, plain)  # the steering does change the text
    assert len(layer._forward_hooks) == hooks_before  # the per-request hook was removed
