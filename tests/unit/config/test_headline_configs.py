"""The shipped configs for large models validate, and every feature resolves to a layer and index in range."""

from pathlib import Path

import pytest

from steering.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
# (decoder layers of the model, SAE width, layers the SAE release publishes or None for all)
SHAPES = {
    "llama-3.1-8b-instruct.yaml": (32, 131072, {3, 7, 11, 15, 19, 23, 27}),
    "qwen3-8b-qwen-scope.yaml": (36, 65536, None),
}


def test_every_shipped_config_is_covered():
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(SHAPES)


@pytest.mark.parametrize("name", list(SHAPES))
def test_headline_config_resolves(name):
    config = load_config(CONFIGS / name)
    n_layers, d_sae, published = SHAPES[name]
    config.check_against(n_layers, d_sae)
    for f in config.features:
        assert published is None or f.layer in published, f"{f.key} is on a layer the SAE release does not publish"
        assert f.label, f"{f.key} needs a label for its slider"
        assert f.range is None or f.range[0] <= f.strength <= f.range[1]
        assert config.sae.subfolder(f.layer)
    assert 0 <= config.resolve_inspector_layer(n_layers) < n_layers
    assert config.vectors_path().parent == CONFIGS


def test_llama_config_uses_the_andyrdt_layout():
    config = load_config(CONFIGS / "llama-3.1-8b-instruct.yaml")
    assert config.sae.format == "dictionary_learning" and config.sae.subfolder(15) == "resid_post_layer_15/trainer_1"
    assert (config.features[0].layer, config.features[0].index, config.features[0].mode) == (15, 21576, "clamp")
    assert all(f.strength == 0 and f.mode == "add" for f in config.features[1:])  # present but inactive by default


def test_qwen_scope_config_names_its_file_and_k():
    config = load_config(CONFIGS / "qwen3-8b-qwen-scope.yaml")
    assert config.sae.format == "qwen_scope" and config.sae.subfolder(18) == "layer18.sae.pt" and config.sae.k == 50
