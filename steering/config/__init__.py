"""The demo configuration: what `demo.yaml` says, parsed and validated.

Canonical form (every key except `model` is optional)::

    model: embedded:smollm2-135m-instruct   # Hub id, local folder, or the embedded default name
    device: auto        # auto | cpu | cuda | cuda:N | mps
    dtype: auto         # auto | float32 | bfloat16 | float16
    sae:                # optional
      source: andyrdt/saes-llama-3.1-8b-instruct   # Hub repo id or local folder
      format: auto      # one of SAE_FORMATS
      path: "resid_post_layer_{layer}/trainer_1"   # subfolder per layer; optional
      revision: null
    features:
      - [15, 21576, 8.0]              # [layer, feature_idx, strength]; [layer, feature_idx] = strength 0
      - {layer: 15, index: 123, strength: 8.0, label: "Eiffel Tower", mode: clamp, range: [0, 20]}
      - {layer: 15, index: 77, strength: 30, mode: add, condition: {feature: "L15:123", above: 2.0}}
    mode: add           # default mode for features without their own: one of MODES (config/modes.py)
    steer_special_tokens: true
    steer_generated_only: false
    generation: {max_new_tokens: 256, temperature: 0.7, top_p: 0.9, repetition_penalty: 1.1, seed: 0}
    system_prompt: null
    inspector_layer: 15
    vectors: steering_vectors.pt
    backend: hooks      # hooks | nnsight

The original project's flat keys are accepted as aliases (`ALIASES`), and its evaluation keys
(`IGNORED_KEYS`) are tolerated and dropped. Every other unknown key is an error.

Every problem is reported as `key.path: what is wrong, got VALUE. Fix: what to write.`; parsing collects
all problems and raises one `ConfigError` listing them one per line. Pure Python (no torch), so the app
and tools can validate a config without loading a model.

Modules: `modes` (the steering operators and the conditional modifier), `schema` (the dataclasses, each validating itself once), `load` (YAML and the parser that
gathers every problem), `legacy` (the original project's keys), `problems` (`ConfigError`, wording).
"""

from steering.config.legacy import ALIASES, IGNORED_KEYS
from steering.config.load import load_config, parse_config
from steering.config.modes import MODE_INFO, Condition, Mode
from steering.config.problems import ConfigError
from steering.config.schema import (
    BACKENDS,
    DEFAULT_MODEL,
    DEFAULT_VECTORS,
    DTYPES,
    MODES,
    SAE_FORMATS,
    DemoConfig,
    FeatureSpec,
    GenerationSettings,
    SAESpec,
    VLLMSettings,
)

__all__ = [
    "MODES",
    "MODE_INFO",
    "Mode",
    "Condition",
    "SAE_FORMATS",
    "DTYPES",
    "BACKENDS",
    "DEFAULT_MODEL",
    "DEFAULT_VECTORS",
    "IGNORED_KEYS",
    "ALIASES",
    "ConfigError",
    "FeatureSpec",
    "SAESpec",
    "GenerationSettings",
    "VLLMSettings",
    "DemoConfig",
    "parse_config",
    "load_config",
]
