"""A demo whose features sit on two SAE layers: the shipped layer 15 and a later one (26, where the next SAE goes;
here a random TopK SAE the test writes). Both get sliders, one chat is steered by both at once exactly as the two
edits computed from the SAE files, and the inspector reads each layer's own SAE."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from steering.config import GenerationSettings
from steering.engine import Engine
from steering.service.demo import DemoService
from steering.service.limits import Limits
from steering.service.views import sliders as slider_specs
from steering.steer.plan import Edit, SteeringPlan
from steering.steer.vectors import vectors_for_config
from tests.helpers import ROOT, layer_config, random_sae, write_sae

LATE, LATE_INDEX, LATE_WIDTH = 26, 7, 128
MUSIC = 8241
ASK = "Tell me about your weekend."


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_layers")
    (tmp / "saes").mkdir()
    (tmp / "saes" / "layer_15").symlink_to(ROOT / "saes" / "smollm2-135m-instruct" / "layer_15")
    write_sae(tmp / "saes" / f"layer_{LATE}", random_sae(576, LATE_WIDTH, "topk", seed=5, layer=LATE))
    return tmp


@pytest.fixture(scope="module")
def service(smollm2, folders):
    config = layer_config(folders, [
        {"layer": 15, "index": MUSIC, "strength": 32.0, "label": "music"},
        {"layer": LATE, "index": LATE_INDEX, "strength": 0.0, "label": "a later-layer direction"}],
        generation=GenerationSettings(max_new_tokens=16, temperature=0.0, repetition_penalty=1.0).to_dict())
    engine = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    yield DemoService(engine, Limits(max_new_tokens=64))
    engine.close()


def _unit_row(path, index: int) -> torch.Tensor:
    row = load_file(str(path / "sae_weights.safetensors"))["W_dec"][index].float()
    return row / row.norm()


def test_each_layer_has_its_slider(service):
    sliders = slider_specs(service, service.defaults())
    assert [str(s.key) for s in sliders] == ["L15:8241", f"L{LATE}:{LATE_INDEX}"]
    assert sliders[1].maximum == round(service.engine.typical_norm(LATE)) > sliders[0].maximum  # later layers run larger


def test_one_chat_steered_at_both_layers_equals_the_two_edits_from_the_files(service, folders):
    engine = service.engine
    strengths = {"L15:8241": 32.0, f"L{LATE}:{LATE_INDEX}": 150.0}

    def served(values):
        setup = service.setup_from_api(values, "own", None, 16, 0.0, None, None, None, None, None)
        return [u.steered for u in service.chat(ASK, None, setup)][-1]

    both = served(strengths)
    plan = SteeringPlan({15: [Edit("add", _unit_row(folders / "saes" / "layer_15", MUSIC), 32.0)],
                         LATE: [Edit("add", _unit_row(folders / "saes" / f"layer_{LATE}", LATE_INDEX), 150.0)]})
    settings = replace(engine.config.generation, max_new_tokens=16, temperature=0.0)
    assert both == engine.chat(ASK, settings=settings, plan=plan)
    only_15 = served({**strengths, f"L{LATE}:{LATE_INDEX}": 0.0})
    only_late = served({**strengths, "L15:8241": 0.0})
    assert len({both, only_15, only_late}) == 3, "each layer's edit changes the answer"


def test_the_inspector_reads_each_layers_own_sae(service):
    engine = service.engine
    late = engine.inspect(ASK, n=5, layer=LATE)
    assert late and all(0 <= f.index < LATE_WIDTH for f in late) and late[0].value > 0
    assert engine.sae(LATE).W_dec.shape == (LATE_WIDTH, 576) and engine.sae(15).W_dec.shape == (16384, 576)
