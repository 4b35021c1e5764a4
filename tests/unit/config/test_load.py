"""steering/config/load.py: YAML reading, the parser's shape checks, every problem gathered once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from steering.config import (
    DEFAULT_VECTORS,
    ConfigError,
    DemoConfig,
    FeatureSpec,
    GenerationSettings,
    SAESpec,
    load_config,
    parse_config,
)
from tests.unit.config.helpers import CANONICAL_YAML, SAE, cfg, errors, problems, write

# ------------------------------------------------------------------------------------------ happy paths


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


def test_empty_and_null_features_are_fine():
    assert parse_config({"model": "m", "features": []}).features == ()
    assert parse_config({"model": "m", "features": None}).features == ()


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


@pytest.mark.parametrize("key", ["api_key", "API_KEY", "token", "hf_token"])
def test_a_key_in_the_config_is_refused_with_the_variable_to_use(key):
    msg = errors({"model": "m", "backend": "remote", "servers": ["http://h:8000"], key: "s3cr3t-value"})
    variable = "HF_TOKEN" if key == "hf_token" else "STEERING_API_KEY"
    assert f"{key}: a key does not belong in the config file" in msg and f"environment variable {variable}" in msg
    assert "s3cr3t-value" not in msg


def test_a_server_url_with_a_password_is_refused():
    msg = errors({"model": "m", "backend": "remote", "servers": ["http://h:8000", "http://user:s3cr3t@h2:8000"]})
    assert "servers[1]: the URL carries a user or password" in msg and "STEERING_API_KEY" in msg
    assert "s3cr3t" not in msg


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
    assert "mode: must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, got 'nudge'" in msg and "Fix: write mode: add" in msg
    msg = errors(cfg(features=[{"layer": 1, "index": 2, "mode": "Clamp"}]))
    assert "features[0].mode: must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap" in msg and "Fix:" in msg


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
        ({"max_new_tokens": 0}, "generation.max_new_tokens", "use a value from 1 to 16384"),
        ({"max_new_tokens": 10.5}, "generation.max_new_tokens", "write a whole number"),
        ({"max_new_tokens": True}, "generation.max_new_tokens", "write a whole number"),
        ({"temperature": -0.1}, "generation.temperature", "use 0 for greedy"),
        ({"temperature": float("nan")}, "generation.temperature", "write a finite number"),
        ({"temperature": "hot"}, "generation.temperature", "write a number"),
        ({"top_p": 0}, "generation.top_p", "use a value such as 0.9"),
        ({"top_p": 1.5}, "generation.top_p", "use a value such as 0.9"),
        ({"repetition_penalty": 0}, "generation.repetition_penalty", "use 1.0 for no penalty"),
        ({"seed": -2}, "generation.seed", "or null for a random seed"),
        ({"seed": 1.5}, "generation.seed", "or null for a random seed"),
        ({"seed": "42"}, "generation.seed", "without quotes: 42"),
    ],
)
def test_bad_generation(gen, path, fix):
    msg = errors(cfg(generation=gen))
    assert path in msg and fix in msg


@pytest.mark.parametrize(
    "key, value, fix",
    [
        ("device", "gpu", "write device: auto"),
        ("device", "cuda:x", "write device: auto"),
        ("dtype", "fp16", "write dtype: auto"),
        ("steer_special_tokens", "no", "write steer_special_tokens: true or steer_special_tokens: false"),
        ("steer_generated_only", 1, "write steer_generated_only: true"),
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


def test_strength_is_float_and_finite_after_parse():
    c = parse_config(cfg(features=[[1, 2, 3]]))
    assert isinstance(c.features[0].strength, float) and math.isfinite(c.features[0].strength)


def test_backend_and_sae_k(tmp_path):
    cfg = parse_config({"model": "m", "backend": "nnsight", "sae": {"source": "Qwen/SAE-Res-Qwen3-8B-Base-W64K-L0_50", "k": 50}})
    assert cfg.backend == "nnsight" and cfg.sae.k == 50
    assert parse_config(cfg.to_dict(), cfg.base_dir) == cfg
    with pytest.raises(ConfigError, match=r"backend: must be one of hooks, nnsight, vllm, remote, got 'tgi' \(a string\). Fix: write backend: hooks"):
        parse_config({"model": "m", "backend": "tgi"})
    served = parse_config({"model": "m", "backend": "vllm", "vllm": {"tensor_parallel_size": 2, "kv_cache_gib": 2}})
    assert served.vllm.tensor_parallel_size == 2 and served.vllm.kv_cache_gib == 2 and served.vllm.enable_prefix_caching
    assert parse_config(served.to_dict(), served.base_dir) == served
    with pytest.raises(ConfigError) as bad:
        parse_config({"model": "m", "backend": "vllm", "vllm": {"tensor_parallel_size": 0, "max_model_len": 8.5, "cache": 1, "kv_cache_gib": 0.5}})
    text = str(bad.value)
    assert "vllm.tensor_parallel_size: must be >= 1, got 0" in text and "vllm.max_model_len: expected a whole number" in text
    assert "vllm.cache: unknown key" in text and "vllm.kv_cache_gib: expected a whole number" in text
    remote = parse_config({"model": "m", "backend": "remote", "servers": ["http://a:8000", "https://b"]})
    assert remote.servers == ("http://a:8000", "https://b") and parse_config(remote.to_dict(), remote.base_dir) == remote
    with pytest.raises(ConfigError, match="servers: backend: remote needs at least one"):
        parse_config({"model": "m", "backend": "remote"})
    with pytest.raises(ConfigError, match=r"servers: expected a list of http\(s\) URLs, got \['a:8000'\]"):
        parse_config({"model": "m", "servers": ["a:8000"]})
    with pytest.raises(ConfigError, match=r"sae.k: must be >= 1"):
        parse_config({"model": "m", "sae": {"source": "x/y", "k": 0}})


def test_feature_enabled_flag():
    cfg = parse_config({"model": "m", "vectors": "v.pt", "features": [{"layer": 1, "index": 2, "strength": 5.0, "enabled": False}, [1, 3, 1.0]]})
    assert [f.enabled for f in cfg.features] == [False, True]
    assert cfg.to_dict()["features"][0]["enabled"] is False and "enabled" not in cfg.to_dict()["features"][1]
    assert parse_config(cfg.to_dict(), cfg.base_dir) == cfg
    with pytest.raises(ConfigError, match=r"features\[0\].enabled: expected true or false, got 'no'"):
        parse_config({"model": "m", "vectors": "v.pt", "features": [{"layer": 1, "index": 2, "enabled": "no"}]})


# -------------------------------------------------------------------------------------- round trip


def test_to_dict_round_trip(tmp_path):
    c = load_config(write(tmp_path, CANONICAL_YAML))
    d = c.to_dict()
    assert parse_config(d, base_dir=c.base_dir) == c
    # and through YAML text
    assert parse_config(yaml.safe_load(yaml.safe_dump(d)), base_dir=c.base_dir) == c
    assert set(d) == {
        "model", "device", "dtype", "sae", "features", "mode", "steer_special_tokens",
        "steer_generated_only", "generation", "system_prompt", "inspector_layer", "vectors", "backend", "vllm", "servers"
    }  # fmt: skip


def test_to_dict_round_trip_vectors_only():
    c2 = parse_config({"model": "m", "features": [[1, 2, 3.0]], "vectors": "v.pt"})
    assert parse_config(c2.to_dict()) == c2


# ----------------------------------------------------------------------------------------- loading


def test_relative_paths_resolve_against_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "demos" / "eiffel"
    (folder / "my_sae").mkdir(parents=True)
    p = write(folder, "model: m\nsae: {source: my_sae}\nvectors: vecs/v.pt\n")
    monkeypatch.chdir(tmp_path)
    c = load_config(p)
    assert c.base_dir == folder.resolve()
    assert c.vectors_path() == folder.resolve() / "vecs" / "v.pt"
    assert Path(c.sae_source()) == folder.resolve() / "my_sae"  # exists -> local


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


# ---------------------------------------------------------------------------------------- validate once


def test_one_bad_feature_value_is_one_problem():
    assert problems(cfg(features=[[15, -3, 1.0]])) == ("features[0].index: must be >= 0, got -3. Fix: use a value >= 0, such as 21576",)
    assert problems(cfg(features=[{"layer": 1, "index": 2, "enabled": "no"}])) == (
        "features[0].enabled: expected true or false, got 'no' (a string). Fix: write enabled: false to start with the feature switched off",
    )


@pytest.mark.parametrize(
    "data, line",
    [
        (cfg(generation={"top_p": 0}), "generation.top_p: must be a finite number > 0 and <= 1 (1 turns nucleus sampling off), got 0."),
        (cfg(top_p=0), "generation.top_p: must be a finite number > 0 and <= 1 (1 turns nucleus sampling off), got 0."),
        (cfg(sae={"source": "x", "format": "gguf"}), "sae.format: must be one of"),
        (cfg(mode="nudge"), "mode: must be one of add, clamp, pin, norm_add, angular, angular_adaptive, cap, got 'nudge'"),
        (cfg(device="gpu"), "device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        ({"model": ""}, "model: expected a non-empty string, got ''"),
        (cfg(features=[[1, 2, 3.0], [1, 2, 4.0]]), "features[1]: duplicates features[0] (L1:2)"),
        ({"model": "m", "vectors": "v.pt", "features": [[1, 2]], "mode": "pin"}, "features[0].mode: pin reads the SAE's encoder"),
    ],
)
def test_each_problem_reported_exactly_once(data, line):
    found = problems(data)
    assert len(found) == 1 and found[0].startswith(line)


def test_each_dataclass_validates_once_per_parse(monkeypatch):
    calls = {cls.__name__: 0 for cls in (FeatureSpec, SAESpec, GenerationSettings, DemoConfig)}
    for cls in (FeatureSpec, SAESpec, GenerationSettings, DemoConfig):
        original = cls._problems

        def counted(self, _original=original, _name=cls.__name__):
            calls[_name] += 1
            return _original(self)

        monkeypatch.setattr(cls, "_problems", counted)
    parse_config(cfg(features=[[15, 1, 2.0], {"layer": 3, "index": 4, "range": [0, 9], "strength": 1}], generation={"seed": 3}))
    assert calls == {"FeatureSpec": 2, "SAESpec": 1, "GenerationSettings": 1, "DemoConfig": 1}


def test_feature_problems_are_named_by_their_entry():
    found = problems(cfg(features=[[0, 1], [True, 2, float("nan")], {"layer": 1, "index": 2, "label": 3}]))
    assert [p.split(":")[0] for p in found] == ["features[1].layer", "features[1].strength", "features[2].label"]
    assert not any(p.startswith("feature.") for p in found)


def test_messages_echo_the_values_as_written():
    """Dataclasses check before normalising, so a strength of 30 is not shown as 30.0."""
    assert problems(cfg(features=[{"layer": 1, "index": 2, "strength": 30, "range": [0, 20]}])) == (
        "features[0].strength: lies outside its own range [0, 20], got 30. Fix: use a strength between 0 and 20, or widen range",
    )
    found = problems(cfg(features=[{"layer": 1, "index": 2, "range": [20, 0]}]))
    assert found == ("features[0].range: min must be less than max, got [20, 0] (a list of 2). Fix: write range: [0, 20] or widen it",)


def test_whole_config_checks_wait_for_the_parts():
    """A failed entry or SAE leaves nothing for duplicate or pin checks to misread."""
    found = problems(cfg(features=[[1, "x"], [1, 2], [1, 2]]))
    assert found == ("features[0].index: expected a whole number, got 'x' (a string). Fix: write a whole number such as 21576",)
    found = problems({"model": "m", "sae": {"source": "x", "format": "nope"}, "features": [[1, 2]], "mode": "pin"})
    assert [p.split(":")[0] for p in found] == ["sae.format"]


def test_problems_from_every_part_in_one_error():
    found = problems({"model": 5, "sae": {"source": ""}, "features": [[-1, 2]], "generation": {"seed": -2}, "dtype": "fp8", "zz": 1})
    assert [p.split(":")[0] for p in found] == ["zz", "sae.source", "features[0].layer", "generation.seed", "model", "dtype"]


def test_a_feature_condition_is_read_and_written_back():
    from steering.config import Condition
    from steering.keys import FeatureKey

    c = parse_config(cfg(features=[{"layer": 15, "index": 2, "strength": 80, "mode": "angular",
                                    "condition": {"feature": "L12:7", "above": 1.5}}]))
    f = c.features[0]
    assert f.condition == Condition(FeatureKey(12, 7), 1.5) and f.mode == "angular" and f.strength == 80.0
    assert parse_config(c.to_dict(), c.base_dir) == c
    assert f.to_dict()["condition"] == {"feature": "L12:7", "above": 1.5}


@pytest.mark.parametrize("condition, says", [
    ("L12:7", "features[0].condition: expected a mapping, got 'L12:7' (a string). Fix: write condition: "
              '{feature: "L15:123", above: 2.0}, or leave it out to steer every position'),
    ({"feature": "L12:7"}, "features[0].condition.above: expected a finite number, got null. Fix: write above: 2.0"),
    ({"feature": "L12:7", "above": float("nan")}, "features[0].condition.above: expected a finite number, got nan"),
    ({"feature": 12, "above": 1}, "features[0].condition.feature: expected a feature key, got 12. Fix: write L, the layer"),
    ({"feature": "L16:7", "above": 1}, "features[0].condition.feature: is read at layer 16, after the steered layer 15, so it is "
                                      "not known when the edit runs, got 'L16:7' (a string). Fix: use a feature at layer 15 or earlier"),
    ({"feature": "L12:7", "above": 1, "below": 3}, "features[0].condition.below: unknown key, got 3. Fix: remove it; a condition has feature and above"),
])
def test_bad_conditions_name_the_field_the_value_and_the_fix(condition, says):
    assert says in errors(cfg(features=[{"layer": 15, "index": 2, "condition": condition}]))


def test_angles_outside_0_to_180_are_refused_for_the_angular_modes():
    msg = errors(cfg(features=[{"layer": 15, "index": 2, "strength": 200, "mode": "angular"},
                               {"layer": 15, "index": 3, "strength": 30, "mode": "angular_adaptive", "range": [-10, 90]}]))
    assert ("features[0].strength: is an angle for mode angular and must lie from 0 to 180 degrees, got 200. "
            "Fix: use an angle such as 80 (90 removes the feature)") in msg
    assert "features[1].range: must lie within the angles mode angular_adaptive accepts (0 to 180), got [-10, 90]" in msg
    msg = errors(cfg(mode="angular", features=[[15, 2, 40], [15, 3, -5]]))
    assert "features[1].strength: is an angle for mode angular and must lie from 0 to 180 degrees, got -5.0" in msg
    assert "features[0]" not in msg
    assert parse_config(cfg(features=[{"layer": 15, "index": 2, "strength": -40, "mode": "cap"}])).features[0].strength == -40


def test_a_condition_without_an_sae_is_refused():
    msg = errors({"model": "m", "vectors": "v.pt",
                  "features": [{"layer": 15, "index": 2, "condition": {"feature": "L15:7", "above": 0}}]})
    assert "features[0].condition: a condition reads a feature by the SAE's encoder, but there is no sae section" in msg
