"""steering/config/__init__.py: the same public names as before the split, and no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import steering.config as config
from steering.config import legacy, load, modes, problems, schema

ROOT = Path(__file__).resolve().parents[3]


def test_public_names_are_reexported_from_their_modules():
    assert set(config.__all__) == {
        "MODES", "MODE_INFO", "Mode", "Condition", "SAE_FORMATS", "DTYPES", "BACKENDS", "DEFAULT_MODEL", "DEFAULT_VECTORS", "IGNORED_KEYS", "ALIASES",
        "ConfigError", "FeatureSpec", "SAESpec", "GenerationSettings", "VLLMSettings", "DemoConfig", "parse_config", "load_config",
    }  # fmt: skip
    for name in config.__all__:
        home = next(m for m in (modes, schema, load, legacy, problems) if hasattr(m, name))
        assert getattr(config, name) is getattr(home, name), name


def test_config_imports_without_torch():
    """Only `steering.config` (with `steering.keys` and `steering.sae.names`) is imported: the `steering`
    package itself is stubbed, so this checks these files alone."""
    code = (
        "import sys, types; pkg = types.ModuleType('steering'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['steering'] = pkg; import steering.config; "
        "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "steering")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
