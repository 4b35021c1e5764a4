"""Request-scoped hooks: exact edits at the right layer and positions, on tensor and tuple layers."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from steering.steer.hooks import (
    StopForward,
    attach,
    capture_residual,
    detach,
    steering,
)
from steering.keys import FeatureKey
from steering.steer.plan import Edit, Gate, SteeringPlan


def _unit(d, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    return v / v.norm()


class _Record:
    """The test's own hooks (independent of the dispatcher): every output of every layer."""

    def __init__(self, layers):
        self.out = {i: [] for i in range(len(layers))}
        self.handles = [l.register_forward_hook(self._hook(i)) for i, l in enumerate(layers)]

    def _hook(self, i):
        def hook(mod, args, output):
            h = output[0] if isinstance(output, tuple) else output
            self.out[i].append(h.detach().clone())
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _forward_record(model, ids, plan=None, **kw):
    attach(model)  # dispatcher first, so the record sees steered outputs
    rec = _Record(model.model.layers)
    try:
        with torch.no_grad(), steering(model, plan, **kw):
            logits = model(input_ids=ids).logits
    finally:
        rec.remove()
    return logits, {i: v[0] for i, v in rec.out.items()}


IDS = torch.tensor([[1, 5, 9, 17, 33, 2, 41, 7]])


def test_add_lands_on_target_layer_only(tiny_llama):
    u = _unit(32, 0)
    base_logits, base = _forward_record(tiny_llama, IDS)
    logits, out = _forward_record(tiny_llama, IDS, SteeringPlan({2: [Edit("add", u, 3.0)]}))
    for i in (0, 1):
        assert torch.equal(out[i], base[i])
    # the target layer's own output is (unsteered output of the same input) + s u
    torch.testing.assert_close(out[2], base[2] + 3.0 * u, rtol=0, atol=1e-5)
    assert not torch.allclose(logits, base_logits)
    after, _ = _forward_record(tiny_llama, IDS)
    assert torch.equal(after, base_logits)
    assert attach(tiny_llama).active == 0


def test_several_features_on_one_layer_apply_in_order(tiny_llama):
    u1, u2 = _unit(32, 1), _unit(32, 2)
    _, base = _forward_record(tiny_llama, IDS)
    plan = SteeringPlan({1: [Edit("clamp", u1, 4.0), Edit("clamp", u2, -2.0)]})
    _, out = _forward_record(tiny_llama, IDS, plan)
    h = base[1].double().numpy()
    a, b = u1.double().numpy(), u2.double().numpy()
    h = h - (h @ a)[..., None] * a + 4.0 * a
    h = h - (h @ b)[..., None] * b - 2.0 * b
    np.testing.assert_allclose(out[1].double().numpy(), h, atol=1e-4)
    _, rev = _forward_record(tiny_llama, IDS, SteeringPlan({1: [Edit("clamp", u2, -2.0), Edit("clamp", u1, 4.0)]}))
    assert not torch.allclose(rev[1], out[1], atol=1e-3)  # u1, u2 not orthogonal: order matters


def test_features_on_several_layers_combine(tiny_llama):
    u1, u3 = _unit(32, 3), _unit(32, 4)
    _, only1 = _forward_record(tiny_llama, IDS, SteeringPlan({1: [Edit("add", u1, 2.0)]}))
    _, both = _forward_record(tiny_llama, IDS, SteeringPlan({1: [Edit("add", u1, 2.0)], 3: [Edit("add", u3, 5.0)]}))
    torch.testing.assert_close(both[1], only1[1])
    torch.testing.assert_close(both[3], only1[3] + 5.0 * u3, rtol=0, atol=1e-5)


class _TupleLayer(nn.Module):
    """A decoder layer in the transformers <= 4.53 style: returns (hidden, extra)."""

    def __init__(self, d, seed, as_tuple):
        super().__init__()
        torch.manual_seed(seed)
        self.lin, self.as_tuple = nn.Linear(d, d), as_tuple

    def forward(self, h):
        out = h + torch.tanh(self.lin(h))
        return (out, "attn-weights") if self.as_tuple else out


class _ToyModel(nn.Module):
    def __init__(self, as_tuple, d=16, n=3):
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(_TupleLayer(d, i, as_tuple) for i in range(n))

    def forward(self, h):
        for layer in self.model.layers:
            out = layer(h)
            h = out[0] if isinstance(out, tuple) else out
        return h


@pytest.mark.parametrize("as_tuple", [True, False])
def test_tuple_and_tensor_layer_outputs_are_steered_alike(as_tuple):
    model = _ToyModel(as_tuple)
    x = torch.randn(2, 5, 16)
    u = _unit(16, 5)
    with torch.no_grad():
        base_mid = model.model.layers[0](x)
        base_mid = base_mid[0] if as_tuple else base_mid
        expected_mid = base_mid - (base_mid @ u)[..., None] * u + 1.5 * u
        expected = model.model.layers[2](_first(model.model.layers[1](expected_mid)))
        expected = _first(expected)
        with steering(model, SteeringPlan({0: [Edit("clamp", u, 1.5)]})):
            got = model(x)
    torch.testing.assert_close(got, expected)
    detach(model)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def test_generated_only_steers_by_absolute_position_during_cached_decoding(tiny_llama):
    u = _unit(32, 6)
    attach(tiny_llama)
    prompt = IDS

    def run(plan):
        rec = _Record(tiny_llama.model.layers)
        try:
            with torch.no_grad(), steering(tiny_llama, plan, prompt_ids=prompt):
                tiny_llama.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False)
        finally:
            rec.remove()
        return rec.out[2]

    base = run(None)
    steered = run(SteeringPlan({2: [Edit("add", u, 4.0)]}, generated_only=True))
    assert steered[0].shape[1] == prompt.shape[1] and steered[1].shape[1] == 1  # prefill, then one token a step
    assert torch.equal(steered[0], base[0])  # prompt positions untouched
    torch.testing.assert_close(steered[1], base[1] + 4.0 * u, rtol=0, atol=1e-5)  # first generated position steered


def test_special_tokens_can_stay_unsteered(tiny_llama):
    u = _unit(32, 7)
    _, base = _forward_record(tiny_llama, IDS)
    plan = SteeringPlan({0: [Edit("add", u, 2.0)]}, steer_special_tokens=False)
    _, out = _forward_record(tiny_llama, IDS, plan, prompt_ids=IDS, special_ids={1, 2})
    special = torch.isin(IDS[0], torch.tensor([1, 2]))
    assert torch.equal(out[0][0, special], base[0][0, special])
    torch.testing.assert_close(out[0][0, ~special], base[0][0, ~special] + 2.0 * u, rtol=0, atol=1e-5)


def _gated_plan():
    """Cap at layer 2 where a feature read at layer 0 (a ReLU of a fixed direction) fires above 0.01."""
    w = _unit(32, 11)
    gate = Gate(FeatureKey(0, 5), 0.01, lambda h: torch.relu(h @ w))
    return SteeringPlan({2: [Edit("cap", _unit(32, 12), 6.0, gate=gate)]}), w


def test_a_condition_read_at_an_earlier_layer_gates_the_edit_in_the_forward(tiny_llama):
    """Against the test's own hook on layer 2 applying the formula where the unsteered layer-0 output fires."""
    plan, w = _gated_plan()
    _, base = _forward_record(tiny_llama, IDS)
    fires = torch.relu(base[0] @ w) > 0.01
    assert fires.any() and (~fires).any()
    u = plan.edits[2][0].direction

    def manual(mod, args, output):
        h = output[0] if isinstance(output, tuple) else output
        lifted = h + (6.0 - h @ u).clamp_min(0).unsqueeze(-1) * u
        new = torch.where(fires.unsqueeze(-1), lifted, h)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = tiny_llama.model.layers[2].register_forward_hook(manual)
    try:
        with torch.no_grad():
            expected = tiny_llama(input_ids=IDS).logits
    finally:
        handle.remove()
    logits, out = _forward_record(tiny_llama, IDS, plan)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    assert torch.equal(out[0], base[0]) and torch.equal(out[1], base[1])


def test_per_row_steering_gates_each_row_by_its_own_condition(tiny_llama):
    """A batch of two left-padded rows, one gated and one plain: each row's outputs equal its lone run's."""
    plan, _ = _gated_plan()
    other = SteeringPlan({1: [Edit("norm_add", _unit(32, 13), 5.0)]})
    short = IDS[:, 2:]
    hooks = attach(tiny_llama)
    alone = []
    for p, ids in ((plan, IDS), (other, short)):
        with torch.no_grad(), hooks.steering(p, prompt_ids=ids):
            alone.append(tiny_llama(input_ids=ids).logits[0, -1])
    batch = torch.cat([IDS, torch.cat([torch.zeros(1, 2, dtype=IDS.dtype), short], dim=1)])
    mask = torch.ones_like(batch)
    mask[1, :2] = 0
    with torch.no_grad(), hooks.steering_rows([plan, other], [IDS, short], [0, 2]):
        got = tiny_llama(input_ids=batch, attention_mask=mask).logits[:, -1]
    torch.testing.assert_close(got[0], alone[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(got[1], alone[1], rtol=0, atol=1e-4)


def test_steering_is_scoped_to_its_thread(tiny_llama):
    base_logits, _ = _forward_record(tiny_llama, IDS)
    plan = SteeringPlan({1: [Edit("add", _unit(32, 8), 50.0)]})
    inside, go, done = threading.Event(), threading.Event(), threading.Event()
    steered = {}

    def worker():
        with torch.no_grad(), steering(tiny_llama, plan):
            inside.set()
            go.wait(5)
            steered["logits"] = tiny_llama(input_ids=IDS).logits
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    with torch.no_grad():
        plain = tiny_llama(input_ids=IDS).logits  # runs while the other thread is inside its block
    go.set()
    t.join(5)
    assert torch.equal(plain, base_logits)
    assert not torch.allclose(steered["logits"], base_logits)


def test_exception_inside_block_leaves_nothing_active(tiny_llama):
    base_logits, _ = _forward_record(tiny_llama, IDS)
    with pytest.raises(RuntimeError, match="boom"):
        with steering(tiny_llama, SteeringPlan({0: [Edit("add", _unit(32, 9), 9.0)]})):
            raise RuntimeError("boom")
    assert attach(tiny_llama).active == 0
    with torch.no_grad():
        assert torch.equal(tiny_llama(input_ids=IDS).logits, base_logits)


def test_nested_blocks_are_refused(tiny_llama):
    plan = SteeringPlan({0: [Edit("add", _unit(32, 1), 1.0)]})
    with steering(tiny_llama, plan):
        with pytest.raises(RuntimeError, match="cannot nest"):
            with steering(tiny_llama, plan):
                pass
    assert attach(tiny_llama).active == 0


def test_capture_stops_early_and_matches_full_run(tiny_llama):
    _, base = _forward_record(tiny_llama, IDS)
    with torch.no_grad(), capture_residual(tiny_llama, 1, stop_early=True) as cap:
        with pytest.raises(StopForward):
            tiny_llama(input_ids=IDS)
    torch.testing.assert_close(cap[1], base[1])
    with pytest.raises(ValueError, match="out of range"):
        with capture_residual(tiny_llama, 99):
            pass


def test_pin_edit_needs_an_activation_rule():
    with pytest.raises(ValueError, match="pin mode needs"):
        Edit("pin", torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="unknown steering mode"):
        Edit("push", torch.ones(3), 1.0)


def test_a_deep_copied_model_keeps_working_and_shares_the_hooks(tiny_llama):
    import copy

    hooks = attach(tiny_llama)
    twin = copy.deepcopy(tiny_llama)
    assert twin.__dict__["_steering_hooks"] is hooks
    plan = SteeringPlan({1: [Edit("add", _unit(32, 3), 2.0)]})
    torch.testing.assert_close(_forward_record(twin, IDS, plan)[0], _forward_record(tiny_llama, IDS, plan)[0])
