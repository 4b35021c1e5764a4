"""steering/config/schema.py: the dataclasses, each validating its own fields once."""

from __future__ import annotations

from pathlib import Path

import pytest

from steering.config import (
    DEFAULT_VECTORS,
    MODES,
    SAE_FORMATS,
    ConfigError,
    DemoConfig,
    FeatureSpec,
    GenerationSettings,
    SAESpec,
    parse_config,
)
from steering.keys import FeatureKey
from tests.unit.config.helpers import cfg


def test_constants():
    assert MODES == ("add", "clamp", "pin", "norm_add", "angular", "angular_adaptive", "cap")
    assert "auto" in SAE_FORMATS and "saelens" in SAE_FORMATS and "dictionary_learning" in SAE_FORMATS


def test_feature_key_display_and_mode():
    c = parse_config(cfg(mode="clamp", features=[[15, 21576, 8.0], {"layer": 3, "index": 4, "mode": "pin", "label": "Paris"}]))
    f0, f1 = c.features
    assert f0.key == FeatureKey(15, 21576) and f1.key == FeatureKey(3, 4)
    assert str(f0.key) == "L15:21576" and f"{f1.key}" == "L3:4"  # the text form, as before
    assert f0.display_name == "feature 21576 @ layer 15"
    assert f1.display_name == "Paris"
    assert c.feature_mode(f0) == "clamp"
    assert c.feature_mode(f1) == "pin"


def test_sae_subfolder():
    assert SAESpec("x", path="resid_post_layer_{layer}/trainer_1").subfolder(15) == "resid_post_layer_15/trainer_1"
    assert SAESpec("x").subfolder(3) is None
    assert SAESpec("x", path="fixed").subfolder(3) == "fixed"


def test_inspector_layer_default():
    assert parse_config(cfg(features=[[7, 1], [3, 2]])).resolve_inspector_layer(30) == 7
    assert parse_config({"model": "m"}).resolve_inspector_layer(30) == 15
    assert parse_config({"model": "m", "inspector_layer": 4}).resolve_inspector_layer(30) == 4


def test_dataclasses_validate_themselves():
    with pytest.raises(ConfigError, match=r"feature\.layer"):
        FeatureSpec(-1, 2)
    with pytest.raises(ConfigError, match=r"feature\.strength: lies outside its own range"):
        FeatureSpec(1, 2, 5.0, range=(0, 1))
    with pytest.raises(ConfigError, match=r"generation\.top_p"):
        GenerationSettings(top_p=0)
    with pytest.raises(ConfigError, match=r"sae\.format"):
        SAESpec("x", format="nope")
    with pytest.raises(ConfigError, match="duplicates"):
        DemoConfig(model="m", sae=SAESpec("x"), features=(FeatureSpec(1, 2), FeatureSpec(1, 2)))
    assert FeatureSpec(1, 2, range=[0, 1]).range == (0.0, 1.0)


# ----------------------------------------------------------------------------------- check_against


def test_check_against_ok():
    c = parse_config(cfg(features=[[0, 0], [29, 131071]], inspector_layer=29))
    c.check_against(30, 131072)
    c.check_against(30, {0: 1, 29: 131072})
    c.check_against(30)


def test_check_against_errors():
    c = parse_config(cfg(features=[[15, 21576], [30, 1], [3, 131072]], inspector_layer=40))
    with pytest.raises(ConfigError) as info:
        c.check_against(30, 131072)
    msg = str(info.value)
    assert "features[1].layer: is outside the model's layers [0, 30), got 30. Fix: use a layer from 0 to 29" in msg
    assert "features[2].index: is outside layer 3's SAE features [0, 131072), got 131072. Fix: use an index from 0 to 131071" in msg
    assert "inspector_layer: is outside the model's layers [0, 30), got 40" in msg
    assert "features[0]" not in msg


def test_check_against_per_layer_widths():
    c = parse_config(cfg(features=[[3, 100], [7, 100], [9, 10**9]]))
    with pytest.raises(ConfigError) as info:
        c.check_against(30, {3: 64, 7: 1024})  # layer 9 not in mapping: not checked
    msg = str(info.value)
    assert "features[0].index: is outside layer 3's SAE features [0, 64), got 100" in msg
    assert "features[1]" not in msg and "features[2]" not in msg


# ------------------------------------------------------------------------------------------- paths


def test_sae_source_local_vs_hub(tmp_path):
    base = tmp_path
    assert parse_config(cfg(sae={"source": "andyrdt/saes-llama-3.1-8b-instruct"}), base).sae_source() == "andyrdt/saes-llama-3.1-8b-instruct"
    assert Path(parse_config(cfg(sae={"source": "./saes/x"}), base).sae_source()) == base / "saes" / "x"
    assert Path(parse_config(cfg(sae={"source": "../saes"}), base).sae_source()) == base / ".." / "saes"
    assert parse_config(cfg(sae={"source": "/abs/sae"}), base).sae_source() == "/abs/sae"
    assert parse_config(cfg(sae={"source": "~/sae"}), base).sae_source() == str(Path("~/sae").expanduser())
    assert parse_config(cfg(sae={"source": "/abs/sae"}), base).vectors_path() == base / DEFAULT_VECTORS
    with pytest.raises(ConfigError, match="sae: no SAE is configured"):
        parse_config({"model": "m"}).sae_source()


def test_model_source(tmp_path):
    (tmp_path / "mymodel").mkdir()
    assert parse_config({"model": "embedded:smollm2-135m-instruct"}, tmp_path).model_source() == "embedded:smollm2-135m-instruct"
    assert parse_config({"model": "HuggingFaceTB/SmolLM2-135M-Instruct"}, tmp_path).model_source() == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert Path(parse_config({"model": "mymodel"}, tmp_path).model_source()) == tmp_path / "mymodel"


# ------------------------------------------------------------------------------------ one validation each


def test_every_problem_of_a_dataclass_at_once():
    with pytest.raises(ConfigError) as info:
        FeatureSpec(-1, "7", float("inf"), label=3, mode="nudge", range=[0], enabled="no")
    assert [p.split(":")[0] for p in info.value.problems] == [
        "feature.layer", "feature.index", "feature.strength", "feature.label", "feature.mode", "feature.range", "feature.enabled",
    ]  # fmt: skip
    with pytest.raises(ConfigError) as info:
        GenerationSettings(max_new_tokens=0, temperature=-1, top_p=2, repetition_penalty=0, seed="4")
    assert len(info.value.problems) == 5
    assert info.value.problems[-1] == ("generation.seed: must be a whole number from -1 to 9223372036854775807 (-1 for a random "
                                       "seed each time), got '4' (a string). Fix: write it without quotes: 4, or null for a random seed each time")
    with pytest.raises(ConfigError) as info:
        SAESpec("", format="gguf", path="", revision=1, k=0)
    assert [p.split(":")[0] for p in info.value.problems] == ["sae.k", "sae.source", "sae.format", "sae.path", "sae.revision"]


def test_checked_as_given_then_normalised():
    with pytest.raises(ConfigError) as info:
        FeatureSpec(1, 2, 30, range=[0, 20])
    assert info.value.problems == ("feature.strength: lies outside its own range [0, 20], got 30. Fix: use a strength between 0 and 20, or widen range",)
    f = FeatureSpec(1, 2, 3, range=[0, 20])
    assert type(f.strength) is float and f.range == (0.0, 20.0) and all(type(x) is float for x in f.range)
    g = GenerationSettings(temperature=1, top_p=1, repetition_penalty=2)
    assert [type(x) for x in (g.temperature, g.top_p, g.repetition_penalty)] == [float, float, float]
    assert DemoConfig(model="m", features=[FeatureSpec(1, 2)], base_dir="x").features == (FeatureSpec(1, 2),)
    assert DemoConfig(model="m", base_dir="x").base_dir == Path("x")


def test_feature_enabled_must_be_a_boolean():
    assert FeatureSpec(1, 2, enabled=False).enabled is False
    with pytest.raises(ConfigError, match=r"^feature\.enabled: expected true or false, got 0\. Fix: write enabled: false"):
        FeatureSpec(1, 2, enabled=0)


def test_demo_config_reports_its_fields_and_cross_checks():
    with pytest.raises(ConfigError) as info:
        DemoConfig(
            model="", device="gpu", dtype="fp8", mode="nudge", system_prompt=1, inspector_layer=-1, vectors="",
            steer_special_tokens="yes", steer_generated_only=None, backend="tgi",
            features=(FeatureSpec(1, 2), FeatureSpec(1, 2, mode="pin")),
        )  # fmt: skip
    assert [p.split(":")[0] for p in info.value.problems] == [
        "model", "device", "dtype", "mode", "system_prompt", "inspector_layer", "vectors",
        "steer_special_tokens", "steer_generated_only", "backend", "features[1]", "features[1].mode",
    ]  # fmt: skip
    assert info.value.problems[-2] == "features[1]: duplicates features[0] (L1:2). Fix: keep one entry per (layer, index) and merge their strengths"


def test_pin_needs_an_sae_but_add_does_not():
    assert DemoConfig(model="m", features=(FeatureSpec(1, 2),)).sae is None
    assert DemoConfig(model="m", sae=SAESpec("x"), mode="pin", features=(FeatureSpec(1, 2),)).mode == "pin"
    with pytest.raises(ConfigError, match=r"features\[0\]\.mode: pin reads the SAE's encoder"):
        DemoConfig(model="m", mode="pin", features=(FeatureSpec(1, 2),))


def test_key_is_a_feature_key():
    f = FeatureSpec(15, 123)
    assert f.key == FeatureKey(15, 123) == (15, 123)
    assert isinstance(f.key, FeatureKey) and FeatureKey.parse(str(f.key)) == f.key
    assert f"{f.key:<10}|" == "L15:123   |"
    assert {f.key: 1}[FeatureKey.parse("L15:123")] == 1
