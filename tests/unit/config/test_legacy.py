"""steering/config/legacy.py: the original project's keys, translated in one place."""

from __future__ import annotations

import pytest

from steering.config import (
    ALIASES,
    IGNORED_KEYS,
    FeatureSpec,
    GenerationSettings,
    SAESpec,
    load_config,
    parse_config,
)
from steering.config.legacy import LEGACY_KEYS, to_canonical
from tests.unit.config.helpers import ORIGINAL_YAML, SAE, cfg, errors, write


def test_ignored_keys():
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


def test_bad_generation_through_flat_alias():
    msg = errors({"model": "m", "temperature": -1})
    assert "generation.temperature: must be a finite number from 0 to 2 (0 is greedy), got -1." in msg


def test_bad_clamp_intensity():
    msg = errors(cfg(clamp_intensity="yes"))
    assert "clamp_intensity: expected true or false" in msg and "Fix: write mode: clamp" in msg


def test_bad_steer_prompt():
    key, value, fix = "steer_prompt", "yes", "write steer_generated_only: false"
    msg = errors(cfg(**{key: value}))
    assert f"{key}:" in msg and fix in msg


def test_to_dict_round_trip_original(tmp_path):
    c = load_config(write(tmp_path, ORIGINAL_YAML))
    d = c.to_dict()
    assert "llm_name" not in d and d["mode"] == "clamp" and d["sae"]["path"] == "resid_post_layer_{layer}/trainer_1"
    assert parse_config(d, base_dir=c.base_dir) == c


# ------------------------------------------------------------------------------------------ to_canonical


def test_to_canonical_translates_every_alias():
    data = {
        "llm_name": "m", "sae_path": "x", "sae_filename_prefix": "layer_", "sae_filename_suffix": "/ae.pt",
        "clamp_intensity": True, "steer_prompt": True, "temperature": 0.5, "seed": 1, "max_new_tokens": 9,
        "repetition_penalty": 1.2, "top_p": 0.8, "description": "dropped", "concept": "dropped",
    }  # fmt: skip
    out, found = to_canonical(data)
    assert found == []
    assert out == {
        "model": "m",
        "sae": {"source": "x", "path": "layer_{layer}"},
        "mode": "clamp",
        "steer_generated_only": False,
        "generation": {"max_new_tokens": 9, "temperature": 0.5, "top_p": 0.8, "repetition_penalty": 1.2, "seed": 1},
    }
    assert set(ALIASES) | set(IGNORED_KEYS) == set(LEGACY_KEYS)


def test_to_canonical_keeps_canonical_and_unknown_keys_and_leaves_input_alone():
    data = {"model": "m", "sae": {"source": "x"}, "generation": {"seed": 2}, "features": [[1, 2]], "bogus": 1}
    snapshot = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    out, found = to_canonical(data)
    assert out == data and found == [] and data == snapshot
    sae_out, _ = to_canonical({"sae": data["sae"], "sae_filename_prefix": "p"})
    assert sae_out["sae"] == {"source": "x", "path": "p{layer}"} and data["sae"] == {"source": "x"}


def test_to_canonical_leaves_sections_that_are_not_mappings_to_the_parser():
    out, found = to_canonical({"sae": "andyrdt/saes", "sae_path": "y", "generation": [1], "seed": 3})
    assert out == {"sae": "andyrdt/saes", "generation": [1]} and found == []


def test_to_canonical_reports_instead_of_choosing():
    out, found = to_canonical({"model": "a", "llm_name": "b", "clamp_intensity": 1, "steer_prompt": None})
    assert out == {"model": "a"}
    assert [p.split(":")[0] for p in found] == ["llm_name", "clamp_intensity", "steer_prompt"]
    assert found[0] == (
        "llm_name: conflicts with model (llm_name means model: 'b', but model is 'a'), got 'b' (a string). Fix: remove llm_name and keep model"
    )


def test_alias_conflict_names_the_alias_value_as_written():
    found = errors({"model": "m", "mode": "add", "clamp_intensity": True})
    assert "clamp_intensity means mode: 'clamp', but mode is 'add'), got true (a boolean)" in found


def test_alias_equal_number_is_not_a_conflict_but_bool_is():
    assert parse_config(cfg(seed=1, generation={"seed": 1})).generation.seed == 1
    assert parse_config(cfg(temperature=1, generation={"temperature": 1.0})).generation.temperature == 1.0
    assert "conflicts with generation.seed" in errors(cfg(seed=True, generation={"seed": 1}))


def test_legacy_filename_parts_must_be_strings():
    msg = errors({"model": "m", "sae_path": "x", "sae_filename_prefix": 5})
    assert "sae_filename_prefix: expected a string, got 5. Fix: quote it" in msg


def test_original_features_and_sections_build_the_same_dataclasses():
    c = parse_config({"llm_name": "m", "sae_path": "x", "features": [[1, 2, 3.0]], "top_p": 0.5})
    assert c.sae == SAESpec("x") and c.features == (FeatureSpec(1, 2, 3.0),)
    assert c.generation == GenerationSettings(top_p=0.5)


@pytest.mark.parametrize("key", sorted(IGNORED_KEYS))
def test_each_ignored_key_is_dropped(key):
    assert parse_config({"model": "m", key: "anything"}) == parse_config({"model": "m"})
    assert key not in parse_config({"model": "m", key: 1}).to_dict()
