"""`python -m steering.cli.extract`: writes the config's steering vectors file."""


from steering.cli.extract import main
from steering.steer.vectors import load_vectors, staleness
from tests.helpers import layer_config


def test_cli_writes_the_configs_file(tmp_path, saes, capsys):
    cfg = layer_config(tmp_path, [[1, 5, 2.0], [2, 9, 1.0]])
    assert main([str(tmp_path / "demo.yaml")]) == 0
    assert "wrote 2 vector(s)" in capsys.readouterr().out
    assert staleness(load_vectors(cfg.vectors_path()), cfg) == []
