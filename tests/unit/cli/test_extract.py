"""`python -m steering.cli.extract`: writes the config's steering vectors file."""

import pytest
import yaml

from steering.cli.extract import main
from steering.config import load_config
from steering.steer.vectors import load_vectors, staleness
from tests.helpers import random_sae, write_sae


def _config(tmp_path, features, sae_section=None, **extra):
    data = {"model": "embedded:smollm2-135m-instruct", "features": features, **extra}
    if sae_section is not False:
        data["sae"] = sae_section or {"source": "./saes", "format": "saelens", "path": "layer_{layer}"}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture
def saes(tmp_path):
    out = {}
    for layer in (1, 2):
        sae = random_sae(24, 40, "jumprelu", seed=layer, layer=layer)
        write_sae(tmp_path / "saes" / f"layer_{layer}", sae)
        out[layer] = sae
    return out


def test_cli_writes_the_configs_file(tmp_path, saes, capsys):
    cfg = _config(tmp_path, [[1, 5, 2.0], [2, 9, 1.0]])
    assert main([str(tmp_path / "demo.yaml")]) == 0
    assert "wrote 2 vector(s)" in capsys.readouterr().out
    assert staleness(load_vectors(cfg.vectors_path()), cfg) == []
