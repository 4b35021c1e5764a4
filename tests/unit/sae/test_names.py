"""The one list of format names: config and the registry both use it, and importing it loads no torch."""

import subprocess
import sys
from pathlib import Path

from steering.config import SAE_FORMATS
from steering.sae import names
from steering.sae.registry import FORMATS

ROOT = Path(__file__).resolve().parents[3]


def test_config_and_registry_share_the_list():
    assert set(SAE_FORMATS) == set(FORMATS) | {"auto"}, "config.SAE_FORMATS must list every registered format"
    assert SAE_FORMATS is names.SAE_FORMATS
    assert tuple(FORMATS) == names.FORMAT_NAMES and names.SAE_FORMATS == ("auto", *names.FORMAT_NAMES)


def test_names_import_without_torch():
    """Only `steering.sae` and `steering.sae.names` are imported (the `steering` package is stubbed), so
    this checks these two files alone."""
    code = (
        "import sys, types; pkg = types.ModuleType('steering'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['steering'] = pkg; import steering.sae.names; "
        "print(sorted(m for m in ('torch', 'numpy', 'safetensors', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "steering")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
