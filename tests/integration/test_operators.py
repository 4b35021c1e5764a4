"""The steering operators on the real SmolLM2 with the shipped layer-15 SAE: each one changes the answer, and the
answer generated through the hooks backend (KV cache, one token a step) is what an independent computation of its
formula gives: one teacher-forced forward over prompt + answer, with the test's own hooks applying the formula in
float64 and reading the condition features by the SAE's own `encode` (or by hand for a per-feature SAE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from steering.backends.hooks import HooksBackend
from steering.config import Condition, FeatureSpec, GenerationSettings
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.steer.vectors import vectors_for_config
from tests.helpers import ROOT, layer_config, random_sae, write_sae

LAYER, MUSIC, ME = 15, 8241, 15997  # the shipped music feature; a feature firing on "I" and "me"
EARLY, EARLY_INDEX = 10, 7  # a per-feature (JumpReLU) test SAE at layer 10, for a condition read before layer 15
PROMPT = "Tell me about your weekend."
GREEDY = GenerationSettings(max_new_tokens=20, temperature=0.0, repetition_penalty=1.0)
LOGIT_TOLERANCE = 2e-3  # absolute, on logits of magnitude ~20: KV-cached float32 decoding against one float64-edited forward

CASES = {
    "norm_add": (FeatureSpec(layer=LAYER, index=MUSIC, mode="norm_add"), 50.0),
    "angular": (FeatureSpec(layer=LAYER, index=MUSIC, mode="angular"), 80.0),
    "angular_adaptive": (FeatureSpec(layer=LAYER, index=MUSIC, mode="angular_adaptive"), 80.0),
    "cap": (FeatureSpec(layer=LAYER, index=MUSIC, mode="cap"), 40.0),
    "add where 'I/me' fires (same layer, TopK SAE)":
        (FeatureSpec(layer=LAYER, index=MUSIC, mode="add", condition=Condition(FeatureKey(LAYER, ME), 2.0)), 60.0),
    "cap where a layer-10 feature fires (JumpReLU SAE)":
        (FeatureSpec(layer=LAYER, index=MUSIC, mode="cap", condition=Condition(FeatureKey(EARLY, EARLY_INDEX), 0.0)), 50.0),
}


@pytest.fixture(scope="module")
def engine(smollm2, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("operators")
    (tmp / "saes").mkdir()
    (tmp / "saes" / f"layer_{LAYER}").symlink_to(ROOT / "saes" / "smollm2-135m-instruct" / f"layer_{LAYER}")
    write_sae(tmp / "saes" / f"layer_{EARLY}", random_sae(576, 64, "jumprelu", seed=3, layer=EARLY))
    config = layer_config(tmp, [{"layer": LAYER, "index": MUSIC, "strength": 0.0, "label": "music"}],
                          generation=GREEDY.to_dict())
    model, tokenizer = smollm2
    with Engine(config, HooksBackend(model, tokenizer, log=lambda m: None), vectors_for_config(config, log=lambda m: None)) as e:
        yield e


def _answer(engine, feature, strength, prompt=PROMPT):
    plan = engine.plan({feature.key: strength}, features=[feature]) if feature is not None else None
    r = engine.request(prompt, plan, GREEDY, record_logits=True)
    engine.run_now([r])
    assert r.error is None, r.error
    return r


@pytest.fixture(scope="module")
def answers(engine):
    """Each case's answer, the unsteered one and, for a conditional case, the same edit without its condition."""
    from dataclasses import replace

    found = {"unsteered": _answer(engine, None, None)}
    for name, (feature, strength) in CASES.items():
        found[name] = _answer(engine, feature, strength)
        if feature.condition is not None:
            found[name + " (everywhere)"] = _answer(engine, replace(feature, condition=None), strength)
    return found


def _edit(mode: str, h: np.ndarray, u: np.ndarray, s: float) -> np.ndarray:
    """The docs' formulas, written again here in float64 (rows of h are positions)."""
    p = h @ u
    if mode == "add":
        return h + s * u
    if mode == "norm_add":
        moved = h + s * u
        return moved * (np.linalg.norm(h, axis=-1) / np.linalg.norm(moved, axis=-1))[:, None]
    if mode == "cap":
        return h + np.maximum(0.0, s - p)[:, None] * u
    perp = h - p[:, None] * u
    v = perp / np.linalg.norm(perp, axis=-1, keepdims=True)
    t = math.radians(s)
    rotated = np.linalg.norm(h, axis=-1, keepdims=True) * (math.cos(t) * u + math.sin(t) * v)
    return rotated if mode == "angular" else np.where((p > 0)[:, None], rotated, h)


def _early_activation(engine, x: torch.Tensor) -> torch.Tensor:
    """Feature EARLY_INDEX of the layer-10 JumpReLU SAE, by hand: relu(pre) where pre > threshold."""
    sae = engine.sae(EARLY)
    pre = (x.double() - sae.b_dec.double()) @ sae.W_enc[:, EARLY_INDEX].double() + float(sae.b_enc[EARLY_INDEX])
    return torch.where(pre > float(sae.threshold[EARLY_INDEX]), pre, torch.zeros_like(pre))


def _teacher_forced(engine, feature, strength, answer_ids):
    """Logits at the answer's positions, prompt + answer in one forward, steered by the test's own hooks."""
    model = engine.model
    ids = engine.encode(PROMPT)
    full = torch.cat([ids[0], torch.tensor(answer_ids)]).unsqueeze(0)
    u = engine.vector(LAYER, MUSIC).direction.double().numpy()
    seen: dict[str, torch.Tensor] = {}

    def read_early(mod, args, output):
        seen["early"] = _early_activation(engine, output[0] if isinstance(output, tuple) else output)[0]

    def steer(mod, args, output):
        h = output[0] if isinstance(output, tuple) else output  # (1, T, d)
        edited = torch.from_numpy(_edit(feature.mode, h[0].double().numpy(), u, strength))
        c = feature.condition
        if c is not None:
            a = engine.sae(LAYER).encode(h[0].float())[:, ME].double() if c.feature.layer == LAYER else seen["early"]
            fires = a > c.above
            assert fires.any() and not fires.all(), "the condition should fire on some positions and not others"
            edited = torch.where(fires[:, None], edited, h[0].double())
        new = edited.to(h.dtype).unsqueeze(0)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    layers = model.model.layers
    handles = [layers[LAYER].register_forward_hook(steer), layers[EARLY].register_forward_hook(read_early)]
    try:
        with torch.inference_mode():
            return model(full).logits[0, ids.shape[-1] - 1 : -1]
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("case", list(CASES))
def test_each_operator_changes_the_answer_as_its_formula_says(engine, answers, case):
    feature, strength = CASES[case]
    got = answers[case]
    assert got.tokens != answers["unsteered"].tokens
    if feature.condition is not None:
        assert got.tokens != answers[case + " (everywhere)"].tokens, "the condition should matter"
    reference = _teacher_forced(engine, feature, strength, got.tokens)
    recorded = torch.stack(got.logits)
    assert reference.argmax(-1).tolist() == got.tokens
    assert (recorded - reference).abs().max().item() < LOGIT_TOLERANCE


def test_rows_of_one_batch_equal_each_operator_alone(engine, answers):
    """Per-row steering: the cases together with an unsteered row in one batch, prompts of different lengths."""
    prompts = [PROMPT, "Hi!", PROMPT, "What is your favourite food, and why?"]
    names = list(CASES)
    rows, expected = [], []
    for i, name in enumerate(names):
        feature, strength = CASES[name]
        prompt = prompts[i % len(prompts)]
        rows.append(engine.request(prompt, engine.plan({feature.key: strength}, features=[feature]), GREEDY))
        expected.append(answers[name].tokens if prompt == PROMPT else _answer(engine, feature, strength, prompt).tokens)
    rows.append(engine.request(PROMPT, None, GREEDY))
    expected.append(answers["unsteered"].tokens)
    engine.run_now(rows)
    assert [r.tokens for r in rows] == expected
