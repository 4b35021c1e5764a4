"""The app's request logic on the real model, without Gradio."""

from dataclasses import replace

import pytest

from steering.config import GenerationSettings, load_config
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.service.demo import DemoService
from steering.service.limits import Limits, UserError
from steering.service.views import sliders as slider_specs
from steering.steer.vectors import vectors_for_config
from tests.conftest import write_test_demo


@pytest.fixture(scope="module")
def service(smollm2, tmp_path_factory):
    config = load_config(write_test_demo(tmp_path_factory.mktemp("svc")))
    steerer = Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None))
    return DemoService(steerer, Limits(max_new_tokens=64))


def test_sliders_span_the_layers_typical_norm(service):
    sliders = slider_specs(service, service.defaults())
    assert [str(s.key) for s in sliders] == ["L15:3", "L15:4"]
    norm = service.engine.typical_norm(15)
    assert 120 < norm < 260
    assert sliders[0].maximum == round(norm) and sliders[0].minimum == -round(norm)
    assert sliders[1].mode == "clamp" and sliders[0].mode == "add"


def test_validation_clamps_strengths_and_caps_tokens(service):
    setup = replace(service.defaults(), strengths={"L15:3": 1e9, "L99:1": 3.0}, generation=GenerationSettings(max_new_tokens=5000))
    fixed, notices = service.validated(setup)
    assert fixed.strengths[FeatureKey(15, 3)] == service.slider_range(service.engine.features[0])[1]
    assert fixed.generation.max_new_tokens == 64
    assert any("outside its range" in n for n in notices) and any("unknown feature L99:1" in n for n in notices)
    with pytest.raises(UserError, match="must be a finite number"):
        service.validated(replace(setup, strengths={"L15:3": float("nan")}))
    with pytest.raises(UserError, match="Layer 40 is outside this model"):
        service.validated(replace(setup, custom=((40, 1),)))
    with pytest.raises(UserError, match="Feature 256 is outside the SAE"):
        service.validated(replace(setup, custom=((15, 256),)))
    with pytest.raises(UserError, match="At most 8 features"):
        service.validated(replace(setup, custom=tuple((15, i) for i in range(9))))


def test_chat_streams_and_compare_gives_the_unsteered_answer(service):
    base = service.defaults()
    plain = list(service.chat("What is the capital of France?", [], base))
    assert len(plain) > 3 and "Paris" in plain[-1].steered and plain[-1].unsteered is None
    steered = replace(base, strengths={"L15:3": 120.0}, compare=True)
    both = list(service.chat("What is the capital of France?", [], steered))[-1]
    assert both.unsteered == plain[-1].steered  # same prompt and seed, no steering
    assert both.steered != both.unsteered


def test_custom_features_are_per_visitor(service):
    setup = replace(service.defaults(), custom=((15, 10),), strengths={"L15:10": 150.0})
    keys = [str(s.key) for s in slider_specs(service, setup)]
    assert keys == ["L15:3", "L15:4", "L15:10"] and [s.custom for s in slider_specs(service, setup)] == [False, False, True]
    assert [str(f.key) for f in service.engine.features] == ["L15:3", "L15:4"]  # the shared list is untouched
    changed = list(service.chat("Say hello.", [], setup))[-1].steered
    same = list(service.chat("Say hello.", [], service.defaults()))[-1].steered
    assert changed != same


def test_bad_messages_are_refused_with_reasons(service):
    with pytest.raises(UserError, match="The message is empty"):
        list(service.chat("  \x00 ", [], service.defaults()))
    with pytest.raises(UserError, match="the limit is 2048"):
        list(service.chat("x" * 3000, [], service.defaults()))


def test_long_history_is_trimmed_with_a_notice(service):
    small = DemoService(service.engine, Limits(max_new_tokens=8, max_prompt_tokens=120))
    history = [{"role": "user", "content": "Tell me a long story about dragons. " * 3}, {"role": "assistant", "content": "Once upon a time " * 10}] * 3
    first = next(iter(small.chat("And then?", history, replace(small.defaults(), generation=GenerationSettings(max_new_tokens=8, temperature=0)))))
    assert any("oldest exchange(s) were left out" in n for n in first.notices)


def test_inspector_calls_match_the_library(service):
    rows = service.inspect("The ocean is deep and blue.", n=5, view="last")
    codes = service.engine.message_codes("The ocean is deep and blue.").codes  # (T, F), the message's own tokens
    lib = codes[-1].topk(5)
    assert [r["index"] for r in rows] == lib.indices.tolist() and {r["token"] for r in rows} == {"."}
    assert rows[0]["activation"] == pytest.approx(float(lib.values[0]), abs=1e-3)
    whole = service.inspect("The ocean is deep and blue.", n=5)
    assert whole[0]["activation"] == pytest.approx(float(codes[[1, 3, 5]].max()), abs=1e-3), "ocean, deep, blue"
    steered = service.inspect("The ocean is deep and blue.", replace(service.defaults(), strengths={"L15:3": 150.0}), steered=True, n=5)
    assert steered != rows
    scan, rate = service.scan("sea\nwaves\ntaxes", rows[0]["index"])
    assert len(scan) == 3 and 0 <= rate <= 1
    concept = service.concept_search("the ocean", n=3)
    assert len(concept) == 3 and concept[0]["score"] >= concept[-1]["score"]
    with pytest.raises(UserError, match="Feature 300 is outside the SAE"):
        service.scan("sea", 300)
    with pytest.raises(UserError, match="whole number"):
        service.contexts(2.5)


def test_inspector_without_an_sae_says_how_to_enable_it(smollm2, tmp_path):
    (tmp_path / "demo.yaml").write_text("model: embedded:smollm2-135m-instruct\n")
    config = load_config(tmp_path / "demo.yaml")
    svc = DemoService(Engine.for_model(config, *smollm2, vectors_for_config(config)))
    with pytest.raises(UserError, match="no SAE configured.*add an `sae:` section"):
        svc.inspect("hello")


def test_features_listed_off_start_off_with_their_recommended_strength(smollm2, tmp_path):
    config = load_config(write_test_demo(tmp_path, features=[
        {"layer": 15, "index": 3, "strength": 40.0, "label": "on"},
        {"layer": 15, "index": 4, "strength": 60.0, "label": "waiting", "mode": "clamp", "enabled": False},
    ]))
    svc = DemoService(Engine.for_model(config, *smollm2, vectors_for_config(config, log=lambda m: None)))
    assert svc.engine.default_strengths() == {FeatureKey(15, 3): 40.0, FeatureKey(15, 4): None}
    sliders = slider_specs(svc, svc.defaults())
    assert [(s.value, s.enabled) for s in sliders] == [(40.0, True), (60.0, False)]
    assert [e.label for e in svc.plan(svc.defaults()).edits[15]] == ["on"]  # the clamp feature is not applied


def test_the_inspector_panel_is_display_ready(service):
    from steering.service.views import inspector_panel

    panel = inspector_panel(service, "Tell me about the sea.", service.defaults(), steered=False)
    rows = service.inspect("Tell me about the sea.", n=10)
    assert panel.table == [[r["index"], r["label"], r["activation"], r["token"]] for r in rows]
    assert panel.bars["feature"] == [str(r["index"]) for r in rows] and panel.top_index == rows[0]["index"]
    assert [t for t, _ in panel.tokens] == ["Tell", " me", " about", " the", " sea", "."], "the message alone"
    shown = [v for _, v in panel.tokens if v is not None]
    assert shown and max(shown) == 1.0  # scaled to the strongest token
    codes = service.engine.message_codes("Tell me about the sea.").codes
    assert [row[0][0] for row in panel.per_token] == codes.argmax(dim=1).tolist()
    assert "Layer 15, unsteered: the strongest features over the words of your message" in panel.note
    last = inspector_panel(service, "Tell me about the sea.", service.defaults(), steered=False, view="last")
    assert {row[3] for row in last.table} == {"."} and "at the last token of your message" in last.note
