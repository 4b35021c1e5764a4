"""Steer an instruct LLM with sparse-autoencoder features, and inspect which features fire.

Notebook use::

    from steering import Steerer
    s = Steerer.from_config("demo.yaml")
    for piece in s.stream([{"role": "user", "content": "Hi!"}], strengths={"L15:123": 80.0}):
        print(piece, end="")
    s.inspect("Tell me about the sea")

Lower level: `config` (demo.yaml), `models` (loading, chat template), `sae` / `sae_formats`
(SAEs and their formats), `vectors` (steering_vectors.pt), `hooks` (request-scoped steering
and capture), `generation` (streaming), `inspector` (read-only statistics).
"""

from .config import ConfigError, DemoConfig, FeatureSpec, GenerationSettings, load_config
from .hooks import Edit, SteeringPlan, capture_residual, steering
from .sae import SAE
from .sae_formats import load_sae, open_sae
from .session import Steerer

__all__ = [
    "ConfigError", "DemoConfig", "FeatureSpec", "GenerationSettings", "load_config",
    "Edit", "SteeringPlan", "capture_residual", "steering", "SAE", "load_sae", "open_sae", "Steerer",
]
