"""Shared inputs for the config tests: a canonical and an original-project YAML, and small helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from steering.config import ConfigError, parse_config

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


def problems(data, **kw) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kw)
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p
