"""Tests for steering/config.py: parsing, aliases, every validation message, paths, round trip."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import yaml

from steering.config import (
    ALIASES,
    DEFAULT_VECTORS,
    IGNORED_KEYS,
    MODES,
    SAE_FORMATS,
    ConfigError,
    DemoConfig,
    FeatureSpec,
    GenerationSettings,
    SAESpec,
    load_config,
    parse_config,
)

SAE = {"source": "andyrdt/saes-llama-3.1-8b-instruct", "path": "resid_post_layer_{layer}/trainer_1"}

ORIGINAL_YAML = """\
llm_name: meta-llama/Llama-3.1-8B-Instruct
sae_path: andyrdt/saes-llama-3.1-8b-instruct
sae_filename_prefix: "resid_post_layer_"
sae_filename_suffix: "/trainer_1/ae.pt"
features: [[15, 21576]]
clamp_intensity: true
temperature: 0.5
seed: 16
max_new_tokens: 512
repetition_penalty: 1.2
steer_prompt: true
description: "Eiffel Tower steering"
min_intensity_reduced: 0.0
max_intensity_reduced: 20.0
num_values: 11
prompt_dataset: prompts.txt
num_prompts: 50
use_llm_evaluation: true
concept: Eiffel Tower
"""

CANONICAL_YAML = """\
model: embedded:smollm2-135m-instruct
device: cuda:1
dtype: bfloat16
sae:
  source: andyrdt/saes-llama-3.1-8b-instruct
  format: dictionary_learning
  path: "resid_post_layer_{layer}/trainer_1"
  revision: main
features:
  - [15, 21576, 8.0]
  - {layer: 15, index: 7, strength: 3, label: "Eiffel Tower", mode: clamp, range: [0, 20]}
  - [3, 11]
mode: add
steer_special_tokens: false
steer_generated_only: true
generation:
  max_new_tokens: 64
  temperature: 0
  top_p: 1
  repetition_penalty: 1.0
  seed: null
system_prompt: "You are terse."
inspector_layer: 3
vectors: vecs/steering_vectors.pt
"""


def cfg(**kw) -> dict:
    """A minimal valid mapping plus overrides."""
    d = {"model": "m", "sae": dict(SAE)}
    d.update(kw)
    return d


def errors(data, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kw)
    return str(info.value)


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------ happy paths


def test_constants():
    assert MODES == ("add", "clamp", "pin")
    assert "auto" in SAE_FORMATS and "saelens" in SAE_FORMATS and "dictionary_learning" in SAE_FORMATS
    assert set(IGNORED_KEYS) == {
        "description",
        "min_intensity_reduced",
        "max_intensity_reduced",
        "num_values",
        "prompt_dataset",
        "num_prompts",
        "use_llm_evaluation",
        "concept",
    }
    assert issubclass(ConfigError, ValueError)


def test_minimal_defaults():
    c = parse_config({"model": "embedded:smollm2-135m-instruct"})
    assert c.sae is None and c.features == ()
    assert (c.device, c.dtype, c.mode) == ("auto", "auto", "add")
    assert c.steer_special_tokens is True and c.steer_generated_only is False
    assert c.generation == GenerationSettings(256, 0.7, 0.9, 1.1, 0)
    assert c.system_prompt is None and c.inspector_layer is None
    assert c.vectors == DEFAULT_VECTORS


def test_canonical_yaml_loads(tmp_path):
    c = load_config(write(tmp_path, CANONICAL_YAML))
    assert c.model == "embedded:smollm2-135m-instruct"
    assert (c.device, c.dtype) == ("cuda:1", "bfloat16")
    assert c.sae == SAESpec("andyrdt/saes-llama-3.1-8b-instruct", "dictionary_learning", "resid_post_layer_{layer}/trainer_1", "main")
    assert c.features == (
        FeatureSpec(15, 21576, 8.0),
        FeatureSpec(15, 7, 3.0, "Eiffel Tower", "clamp", (0.0, 20.0)),
        FeatureSpec(3, 11, 0.0),
    )
    assert isinstance(c.features[1].strength, float)
    assert c.steer_special_tokens is False and c.steer_generated_only is True
    assert c.generation == GenerationSettings(64, 0.0, 1.0, 1.0, None)
    assert c.generation.greedy
    assert c.system_prompt == "You are terse."
    assert c.inspector_layer == 3
    assert c.base_dir == tmp_path.resolve()


def test_both_feature_forms():
    c = parse_config(cfg(features=[[15, 21576, 8.0], [15, 1], {"layer": 3, "index": 4}, {"layer": 7, "index": 9, "strength": -2.5, "label": "x"}]))
    assert c.features[0] == FeatureSpec(15, 21576, 8.0)
    assert c.features[1].strength == 0.0  # [layer, idx] means strength 0
    assert c.features[2] == FeatureSpec(3, 4, 0.0)
    assert c.features[3] == FeatureSpec(7, 9, -2.5, "x")


def test_feature_key_display_and_mode():
    c = parse_config(cfg(mode="clamp", features=[[15, 21576, 8.0], {"layer": 3, "index": 4, "mode": "pin", "label": "Paris"}]))
    f0, f1 = c.features
    assert f0.key == "L15:21576" and f1.key == "L3:4"
    assert f0.display_name == "feature 21576 @ layer 15"
    assert f1.display_name == "Paris"
    assert c.feature_mode(f0) == "clamp"
    assert c.feature_mode(f1) == "pin"


def test_empty_and_null_features_are_fine():
    assert parse_config({"model": "m", "features": []}).features == ()
    assert parse_config({"model": "m", "features": None}).features == ()


def test_sae_subfolder():
    assert SAESpec("x", path="resid_post_layer_{layer}/trainer_1").subfolder(15) == "resid_post_layer_15/trainer_1"
    assert SAESpec("x").subfolder(3) is None
    assert SAESpec("x", path="fixed").subfolder(3) == "fixed"


def test_inspector_layer_default():
    assert parse_config(cfg(features=[[7, 1], [3, 2]])).resolve_inspector_layer(30) == 7
    assert parse_config({"model": "m"}).resolve_inspector_layer(30) == 15
    assert parse_config({"model": "m", "inspector_layer": 4}).resolve_inspector_layer(30) == 4


# ------------------------------------------------------------------------------------ original project


def test_original_yaml_loads_with_right_meaning(tmp_path):
    c = load_config(write(tmp_path, ORIGINAL_YAML))
    assert c.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert c.sae is not None
    assert c.sae.source == "andyrdt/saes-llama-3.1-8b-instruct"
    assert c.sae.path == "resid_post_layer_{layer}/trainer_1"  # file name ae.pt stripped
    assert c.sae.subfolder(15) == "resid_post_layer_15/trainer_1"
    assert c.features == (FeatureSpec(15, 21576, 0.0),)
    assert c.mode == "clamp"
    assert c.feature_mode(c.features[0]) == "clamp"
    assert c.generation == GenerationSettings(max_new_tokens=512, temperature=0.5, top_p=0.9, repetition_penalty=1.2, seed=16)
    assert c.steer_generated_only is False  # steer_prompt: true
    assert c.sae_source() == "andyrdt/saes-llama-3.1-8b-instruct"  # Hub id unchanged


def test_original_aliases_other_values():
    c = parse_config({"llm_name": "m", "clamp_intensity": False, "steer_prompt": False})
    assert c.mode == "add" and c.steer_generated_only is True
    c = parse_config({"model": "m", "sae_path": "x", "sae_filename_prefix": "layer_", "sae_filename_suffix": "/sae_weights.safetensors"})
    assert c.sae == SAESpec("x", path="layer_{layer}")
    c = parse_config({"model": "m", "sae_path": "x", "sae_filename_prefix": "blocks.", "sae_filename_suffix": ".hook_resid_post"})
    assert c.sae.path == "blocks.{layer}.hook_resid_post"  # not a file name: kept
    assert set(ALIASES) >= {"llm_name", "sae_path", "sae_filename_prefix", "sae_filename_suffix", "clamp_intensity", "steer_prompt"}


def test_alias_equal_to_canonical_is_fine():
    c = parse_config(cfg(llm_name="m", mode="clamp", clamp_intensity=True, temperature=0.5, generation={"temperature": 0.5}))
    assert c.mode == "clamp" and c.generation.temperature == 0.5


@pytest.mark.parametrize(
    "data, alias, canonical",
    [
        ({"model": "a", "llm_name": "b"}, "llm_name", "model"),
        ({"model": "m", "sae": {"source": "a"}, "sae_path": "b"}, "sae_path", "sae.source"),
        ({"model": "m", "sae": {"source": "a", "path": "p{layer}"}, "sae_filename_prefix": "q"}, "sae_filename_prefix", "sae.path"),
        ({"model": "m", "mode": "add", "clamp_intensity": True}, "clamp_intensity", "mode"),
        ({"model": "m", "mode": "pin", "clamp_intensity": False}, "clamp_intensity", "mode"),
        ({"model": "m", "steer_generated_only": False, "steer_prompt": False}, "steer_prompt", "steer_generated_only"),
        ({"model": "m", "seed": 1, "generation": {"seed": 2}}, "seed", "generation.seed"),
        ({"model": "m", "top_p": 0.5, "generation": {"top_p": 0.9}}, "top_p", "generation.top_p"),
    ],
)
def test_alias_conflicts(data, alias, canonical):
    msg = errors(data)
    assert f"{alias}" in msg and f"conflicts with {canonical}" in msg
    assert "Fix: remove" in msg


def test_sae_alias_parts_without_source():
    msg = errors({"model": "m", "sae_filename_prefix": "layer_"})
    assert "sae_path: missing" in msg and "Fix: add sae_path" in msg


def test_ignored_keys_only_at_top_level():
    msg = errors(cfg(sae={**SAE, "concept": "x"}))
    assert "sae.concept: unknown key" in msg


# ------------------------------------------------------------------------------------------ validation


def test_unknown_key_suggests_closest():
    msg = errors({"model": "m", "temprature": 0.5})
    assert "temprature: unknown key" in msg and "did you mean 'temperature'?" in msg
    msg = errors({"model": "m", "generation": {"max_tokens": 5}})
    assert "generation.max_tokens: unknown key" in msg and "did you mean 'max_new_tokens'?" in msg
    msg = errors(cfg(sae={"source": "x", "fromat": "auto"}))
    assert "sae.fromat: unknown key" in msg and "did you mean 'format'?" in msg
    msg = errors(cfg(features=[{"layer": 1, "index": 2, "strenght": 3}]))
    assert "features[0].strenght: unknown key" in msg and "did you mean 'strength'?" in msg
    msg = errors({"model": "m", "zzzzzz": 1})
    assert "zzzzzz: unknown key" in msg and "remove it" in msg


def test_missing_model():
    msg = errors({"features": []})
    assert "model: missing" in msg and "Fix: add model:" in msg
    msg = errors({"model": ""})
    assert "model: expected a non-empty string" in msg


@pytest.mark.parametrize(
    "entry, path, fix",
    [
        (["15", 21576, 1.0], "features[0].layer", "write it without quotes: 15"),
        ([15.5, 21576, 1.0], "features[0].layer", "write a whole number"),
        ([15.0, 21576, 1.0], "features[0].layer", "write it as a whole number: 15"),
        ([True, 21576, 1.0], "features[0].layer", "write a whole number"),
        ([-1, 21576, 1.0], "features[0].layer", "use a value >= 0"),
        ([15, -3, 1.0], "features[0].index", "use a value >= 0"),
        ([15, False, 1.0], "features[0].index", "write a whole number"),
        ([15, 21576, True], "features[0].strength", "write a number"),
        ([15, 21576, "8"], "features[0].strength", "without quotes: 8"),
        ([15, 21576, float("nan")], "features[0].strength", "write a finite number"),
        ([15, 21576, float("inf")], "features[0].strength", "write a finite number"),
        ([15, 21576, float("-inf")], "features[0].strength", "write a finite number"),
    ],
)
def test_bad_feature_values(entry, path, fix):
    msg = errors(cfg(features=[entry]))
    assert path in msg and fix in msg


def test_bool_and_string_reported_with_type():
    msg = errors(cfg(features=[[True, "7", 1.0]]))
    assert "features[0].layer: expected a whole number, got true (a boolean)" in msg
    assert "features[0].index: expected a whole number, got '7' (a string)" in msg


def test_yaml_nan_and_inf(tmp_path):
    p = write(tmp_path, "model: m\nsae: {source: x}\nfeatures:\n  - [1, 2, .nan]\n  - {layer: 1, index: 3, strength: -.inf}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "features[0].strength: must be a finite number, got nan" in msg
    assert "features[1].strength: must be a finite number, got -inf" in msg
    assert "demo.yaml" in msg


@pytest.mark.parametrize(
    "rng, path, fix",
    [
        ([0, 20, 30], "features[0].range", "write range: [0, 20]"),
        ([5], "features[0].range", "write range: [0, 20]"),
        ("0..20", "features[0].range", "write range: [0, 20]"),
        ([20, 0], "features[0].range", "min must be less than max"),
        ([3, 3], "features[0].range", "min must be less than max"),
        ([0, float("inf")], "features[0].range[1]", "write a finite number"),
        (["a", 1], "features[0].range[0]", "write a number"),
    ],
)
def test_bad_range(rng, path, fix):
    msg = errors(cfg(features=[{"layer": 1, "index": 2, "strength": 0.5, "range": rng}]))
    assert path in msg and fix in msg


def test_strength_outside_its_range():
    msg = errors(cfg(features=[{"layer": 1, "index": 2, "strength": 30, "range": [0, 20]}]))
    assert "features[0].strength: lies outside its own range [0, 20], got 30" in msg
    assert "Fix: use a strength between 0 and 20, or widen range" in msg


def test_bad_modes():
    msg = errors(cfg(mode="nudge"))
    assert "mode: must be one of add, clamp, pin, got 'nudge'" in msg and "Fix: write mode: add" in msg
    msg = errors(cfg(features=[{"layer": 1, "index": 2, "mode": "Clamp"}]))
    assert "features[0].mode: must be one of add, clamp, pin" in msg and "Fix:" in msg
    msg = errors(cfg(clamp_intensity="yes"))
    assert "clamp_intensity: expected true or false" in msg and "Fix: write mode: clamp" in msg


@pytest.mark.parametrize("entry", [[1], [1, 2, 3, 4], []])
def test_feature_entry_wrong_length(entry):
    msg = errors(cfg(features=[[0, 1], entry]))
    assert "features[1]: expected [layer, feature_idx] or [layer, feature_idx, strength]" in msg
    assert "Fix: write [15, 21576, 8.0]" in msg


def test_feature_entry_wrong_type_and_missing_fields():
    msg = errors(cfg(features=[15]))
    assert "features[0]: expected a list" in msg and "Fix:" in msg
    msg = errors(cfg(features={"layer": 1}))
    assert "features: expected a list of features" in msg
    msg = errors(cfg(features=[{"index": 2}]))
    assert "features[0].layer: missing" in msg and "Fix: add layer:" in msg


def test_duplicate_features():
    msg = errors(cfg(features=[[15, 1, 2.0], [3, 4], {"layer": 15, "index": 1, "strength": 5}]))
    assert "features[2]: duplicates features[0] (L15:1)" in msg
    assert "Fix: keep one entry per (layer, index)" in msg
    # same index on different layers is fine
    assert len(parse_config(cfg(features=[[15, 1], [16, 1]])).features) == 2


def test_features_need_sae_or_vectors():
    msg = errors({"model": "m", "features": [[15, 1, 2.0]]})
    assert "features: given but there is no sae section and no vectors file" in msg
    assert "Fix: add sae:" in msg and "vectors:" in msg
    # with an explicit vectors file the features are allowed
    c = parse_config({"model": "m", "features": [[15, 1, 2.0]], "vectors": "v.pt"})
    assert c.sae is None and len(c.features) == 1
    # but pin needs the SAE's encoder
    msg = errors({"model": "m", "features": [[15, 1, 2.0]], "vectors": "v.pt", "mode": "pin"})
    assert "features[0].mode: pin reads the SAE's encoder" in msg and "Fix: add sae:" in msg


def test_sae_section_errors():
    msg = errors({"model": "m", "sae": {"format": "auto"}})
    assert "sae.source: missing" in msg and "Fix: add source:" in msg
    msg = errors(cfg(sae={"source": "x", "format": "gguf"}))
    assert "sae.format: must be one of auto, saelens, dictionary_learning, gemma_scope, qwen_scope, sparsify, goodfire, got 'gguf'" in msg and "format: auto" in msg
    msg = errors(cfg(sae="andyrdt/saes"))
    assert "sae: expected a mapping" in msg and "Fix: write sae: {source:" in msg
    msg = errors(cfg(sae={"source": "x", "revision": 123}))
    assert "sae.revision: expected a non-empty string or null, got 123" in msg and "quote it" in msg


@pytest.mark.parametrize(
    "gen, path, fix",
    [
        ({"max_new_tokens": 0}, "generation.max_new_tokens", "use a value >= 1"),
        ({"max_new_tokens": 10.5}, "generation.max_new_tokens", "write a whole number"),
        ({"max_new_tokens": True}, "generation.max_new_tokens", "write a whole number"),
        ({"temperature": -0.1}, "generation.temperature", "use 0 for greedy"),
        ({"temperature": float("nan")}, "generation.temperature", "write a finite number"),
        ({"temperature": "hot"}, "generation.temperature", "write a number"),
        ({"top_p": 0}, "generation.top_p", "use a value such as 0.9"),
        ({"top_p": 1.5}, "generation.top_p", "use a value such as 0.9"),
        ({"repetition_penalty": 0}, "generation.repetition_penalty", "use 1.0 for no penalty"),
        ({"seed": -1}, "generation.seed", "or null for a random seed"),
        ({"seed": 1.5}, "generation.seed", "or null for a random seed"),
        ({"seed": "42"}, "generation.seed", "without quotes: 42"),
    ],
)
def test_bad_generation(gen, path, fix):
    msg = errors(cfg(generation=gen))
    assert path in msg and fix in msg


def test_bad_generation_through_flat_alias():
    msg = errors({"model": "m", "temperature": -1})
    assert "generation.temperature: must be >= 0" in msg


@pytest.mark.parametrize(
    "key, value, fix",
    [
        ("device", "gpu", "write device: auto"),
        ("device", "cuda:x", "write device: auto"),
        ("dtype", "fp16", "write dtype: auto"),
        ("steer_special_tokens", "no", "write steer_special_tokens: true or steer_special_tokens: false"),
        ("steer_generated_only", 1, "write steer_generated_only: true"),
        ("steer_prompt", "yes", "write steer_generated_only: false"),
        ("system_prompt", 5, "quote the text"),
        ("inspector_layer", -1, "use a value >= 0"),
        ("inspector_layer", "3", "without quotes: 3"),
        ("vectors", "", "write vectors: steering_vectors.pt"),
    ],
)
def test_bad_scalars(key, value, fix):
    msg = errors(cfg(**{key: value}))
    assert f"{key}:" in msg and fix in msg


def test_good_devices():
    for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert parse_config({"model": "m", "device": d}).device == d


def test_several_problems_aggregate_one_per_line():
    with pytest.raises(ConfigError) as info:
        parse_config({"model": "m", "sae": dict(SAE), "mode": "x", "features": [[-1, 2], [1, "2"]], "top_p": 2})
    e = info.value
    assert len(e.problems) == 4
    lines = str(e).splitlines()
    assert lines[0] == "4 problems in the config:"
    assert [ln.split(":")[0] for ln in lines[1:]] == ["features[0].layer", "features[1].index", "generation.top_p", "mode"]
    for p in e.problems:
        assert "Fix:" in p


def test_top_level_not_a_mapping():
    msg = errors([1, 2])
    assert "expected a mapping" in msg and "Fix:" in msg


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


# ---------------------------------------------------------------------------------------- check_against


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


# -------------------------------------------------------------------------------------------- round trip


def test_to_dict_round_trip(tmp_path):
    c = load_config(write(tmp_path, CANONICAL_YAML))
    d = c.to_dict()
    assert parse_config(d, base_dir=c.base_dir) == c
    # and through YAML text
    assert parse_config(yaml.safe_load(yaml.safe_dump(d)), base_dir=c.base_dir) == c
    assert set(d) == {
        "model", "device", "dtype", "sae", "features", "mode", "steer_special_tokens",
        "steer_generated_only", "generation", "system_prompt", "inspector_layer", "vectors", "backend"
    }  # fmt: skip


def test_to_dict_round_trip_original_and_vectors_only(tmp_path):
    c = load_config(write(tmp_path, ORIGINAL_YAML))
    d = c.to_dict()
    assert "llm_name" not in d and d["mode"] == "clamp" and d["sae"]["path"] == "resid_post_layer_{layer}/trainer_1"
    assert parse_config(d, base_dir=c.base_dir) == c
    c2 = parse_config({"model": "m", "features": [[1, 2, 3.0]], "vectors": "v.pt"})
    assert parse_config(c2.to_dict()) == c2


# -------------------------------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "demos" / "eiffel"
    (folder / "my_sae").mkdir(parents=True)
    p = write(folder, "model: m\nsae: {source: my_sae}\nvectors: vecs/v.pt\n")
    monkeypatch.chdir(tmp_path)
    c = load_config(p)
    assert c.base_dir == folder.resolve()
    assert c.vectors_path() == folder.resolve() / "vecs" / "v.pt"
    assert Path(c.sae_source()) == folder.resolve() / "my_sae"  # exists -> local


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


# --------------------------------------------------------------------------------------------- loading


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    msg = str(info.value)
    assert "nope.yaml" in msg and "config file not found" in msg and "Fix: check the path" in msg


def test_load_malformed_yaml_reports_line_and_column(tmp_path):
    p = write(tmp_path, "model: m\nfeatures:\n  - [15, 21576\n  - [1, 2]\nmode: add\n", "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "bad.yaml" in msg and "malformed YAML at line" in msg and "column" in msg and "Fix:" in msg


def test_load_tab_indentation_line(tmp_path):
    p = write(tmp_path, "model: m\nsae:\n\tsource: x\n", "tab.yaml")
    with pytest.raises(ConfigError, match=r"tab\.yaml: malformed YAML at line 3, column 1"):
        load_config(p)


def test_load_duplicate_yaml_key(tmp_path):
    p = write(tmp_path, "model: m\nmode: add\nmode: clamp\n")
    with pytest.raises(ConfigError, match=r"line 3, column 1.*duplicate key 'mode'"):
        load_config(p)


def test_load_empty_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"empty\.yaml: the file is empty\. Fix: add at least model:"):
        load_config(write(tmp_path, "", "empty.yaml"))
    with pytest.raises(ConfigError, match=r"list\.yaml: .*expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n", "list.yaml"))


def test_load_invalid_config_names_file_and_keeps_problems(tmp_path):
    p = write(tmp_path, "model: m\nsae: {source: x}\nfeatures: [[1, 2, .inf]]\nmode: nope\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    e = info.value
    assert e.source == str(p)
    assert str(e).startswith(f"{p}: 2 problems")
    assert any(pr.startswith("features[0].strength") for pr in e.problems)
    assert any(pr.startswith("mode:") for pr in e.problems)


def test_strength_is_float_and_finite_after_parse():
    c = parse_config(cfg(features=[[1, 2, 3]]))
    assert isinstance(c.features[0].strength, float) and math.isfinite(c.features[0].strength)


def test_backend_and_sae_k(tmp_path):
    cfg = parse_config({"model": "m", "backend": "nnsight", "sae": {"source": "Qwen/SAE-Res-Qwen3-8B-Base-W64K-L0_50", "k": 50}})
    assert cfg.backend == "nnsight" and cfg.sae.k == 50
    assert parse_config(cfg.to_dict(), cfg.base_dir) == cfg
    with pytest.raises(ConfigError, match=r"backend: must be one of hooks, nnsight, got 'vllm' \(a string\). Fix: write backend: hooks"):
        parse_config({"model": "m", "backend": "vllm"})
    with pytest.raises(ConfigError, match=r"sae.k: must be >= 1"):
        parse_config({"model": "m", "sae": {"source": "x/y", "k": 0}})


def test_feature_enabled_flag():
    cfg = parse_config({"model": "m", "vectors": "v.pt", "features": [{"layer": 1, "index": 2, "strength": 5.0, "enabled": False}, [1, 3, 1.0]]})
    assert [f.enabled for f in cfg.features] == [False, True]
    assert cfg.to_dict()["features"][0]["enabled"] is False and "enabled" not in cfg.to_dict()["features"][1]
    assert parse_config(cfg.to_dict(), cfg.base_dir) == cfg
    with pytest.raises(ConfigError, match=r"features\[0\].enabled: expected true or false, got 'no'"):
        parse_config({"model": "m", "vectors": "v.pt", "features": [{"layer": 1, "index": 2, "enabled": "no"}]})
