"""Steer an instruct LLM with sparse-autoencoder features, and inspect which features fire.

Notebook use::

    from steering import Engine
    with Engine.from_config("demo.yaml") as engine:
        for piece in engine.stream("Hi!", strengths={"L15:8672": 40.0}):
            print(piece, end="")
        engine.inspect("Tell me about the sea")

Layers (docs/architecture.md): `config`, `model`, `sae`, `steer`, `generate`, `backends`,
`inspection`, `engine`, `service`, `cli` and `serving` are the runtime; `steering.offline` holds the
offline tools and is never imported by the runtime. Names load on first use, so `import steering.config` loads no torch.
"""

from steering.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("ConfigError", "DemoConfig", "FeatureSpec", "GenerationSettings", "load_config"), "steering.config"),
    "Engine": "steering.engine",
    "FeatureKey": "steering.keys",
    **dict.fromkeys(("SAE", "load_sae", "open_sae"), "steering.sae"),
    **dict.fromkeys(("Edit", "SteeringPlan", "build_plan"), "steering.steer.plan"),
    **dict.fromkeys(("capture_residual", "steering"), "steering.steer.hooks"),
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
