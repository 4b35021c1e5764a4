"""steering_vectors.pt: extraction from each format, round trip, staleness, and refusal of pickled code."""

import pytest
import torch

from steering.config import load_config
from steering.sae import SAEFormatError
from steering.steer.vectors import (
    VectorsError,
    extract_vectors,
    load_vectors,
    save_vectors,
    staleness,
    vectors_for_config,
)
from tests.conftest import write_test_demo
from tests.helpers import layer_config, random_sae, write_sae


def test_extract_reads_unit_rows_norms_and_rules(tmp_path, saes):
    saes[2].W_dec[7] *= 3.0  # a non-unit row, so the norm is recorded, not assumed
    write_sae(tmp_path / "saes" / "layer_2", saes[2])
    cfg = layer_config(tmp_path, [[1, 5, 2.0], [2, 7, 1.0], [2, 9, 0.5]])
    vs = extract_vectors(cfg, log=lambda m: None)
    assert set(vs.vectors) == {(1, 5), (2, 7), (2, 9)}
    v = vs.get(2, 7)
    torch.testing.assert_close(v.direction, saes[2].W_dec[7] / saes[2].W_dec[7].norm())
    assert v.norm == pytest.approx(float(saes[2].W_dec[7].norm()), rel=1e-6)
    x = torch.randn(5, 24)
    torch.testing.assert_close(v.rule.activation(x), saes[2].encode(x)[:, 7])


def test_round_trip_loads_with_weights_only(tmp_path, saes):
    cfg = layer_config(tmp_path, [[1, 5, 2.0]])
    path = save_vectors(extract_vectors(cfg, log=lambda m: None), tmp_path / "v.pt")
    torch.load(path, weights_only=True)  # plain data only
    back = load_vectors(path)
    assert back.model == cfg.model and back.sae["source"] == "./saes"
    torch.testing.assert_close(back.get(1, 5).direction, extract_vectors(cfg, log=lambda m: None).get(1, 5).direction)
    x = torch.randn(3, 24)
    torch.testing.assert_close(back.get(1, 5).rule.activation(x), saes[1].encode(x)[:, 5])


def test_topk_sae_has_no_per_feature_rule(tmp_path):
    write_sae(tmp_path / "saes" / "layer_1", random_sae(24, 40, "topk", layer=1))
    vs = extract_vectors(layer_config(tmp_path, [[1, 3, 1.0]]), log=lambda m: None)
    assert vs.get(1, 3).rule is None


def test_staleness_names_each_reason(tmp_path, saes):
    cfg = layer_config(tmp_path, [[1, 5, 2.0]])
    vs = extract_vectors(cfg, log=lambda m: None)
    assert staleness(vs, cfg) == []
    other = layer_config(tmp_path, [[1, 5, 2.0], [2, 3, 1.0]], model="someone/other-model")
    reasons = " | ".join(staleness(vs, other))
    assert "extracted for model 'embedded:smollm2-135m-instruct'" in reasons and "someone/other-model" in reasons
    assert "lacks feature(s) L2:3" in reasons
    moved = layer_config(tmp_path, [[1, 5, 2.0]], sae_section={"source": "./saes", "format": "saelens", "path": "layer_{layer}", "revision": "v2"})
    assert any("extracted from SAE" in r for r in staleness(vs, moved))


def test_vectors_for_config_uses_matching_file_and_reextracts_stale_one(tmp_path, saes):
    cfg = layer_config(tmp_path, [[1, 5, 2.0]])
    messages = []
    vectors_for_config(cfg, log=messages.append)
    assert "does not exist" in messages[0] and "python -m steering.cli.extract" in messages[0]
    save_vectors(extract_vectors(cfg, log=lambda m: None), cfg.vectors_path())
    vectors_for_config(cfg, log=messages.append)
    assert messages[-1].startswith("using steering vectors from")
    grown = layer_config(tmp_path, [[1, 5, 2.0], [2, 9, 1.0]])
    messages.clear()
    vs = vectors_for_config(grown, log=messages.append)
    assert "stale or missing" in messages[0] and "lacks feature(s) L2:9" in messages[0]
    assert vs.get(2, 9) is not None


def test_file_without_sae_to_fall_back_on_is_an_error(tmp_path, saes):
    cfg = layer_config(tmp_path, [[1, 5, 2.0]], sae_section=False, vectors="missing.pt")
    with pytest.raises(VectorsError, match="names no SAE to extract from"):
        vectors_for_config(cfg, log=lambda m: None)


def test_feature_outside_the_sae_is_named(tmp_path, saes):
    cfg = layer_config(tmp_path, [[1, 400, 2.0]])
    with pytest.raises(VectorsError, match=r"\[400\] at layer 1 are outside the SAE"):
        extract_vectors(cfg, log=lambda m: None)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED_MARKER",))


def test_pickled_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "steering-vectors/1", "vectors": [_Evil()]}, path)
    with pytest.raises(VectorsError, match="cannot be read as a steering vectors file"):
        load_vectors(path)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_truncated_and_foreign_files_are_refused(tmp_path, saes):
    cfg = layer_config(tmp_path, [[1, 5, 2.0]])
    path = save_vectors(extract_vectors(cfg, log=lambda m: None), tmp_path / "v.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(VectorsError, match="delete .* and run `python -m steering.cli.extract`"):
        load_vectors(path)
    torch.save({"something": torch.ones(2)}, path)
    with pytest.raises(VectorsError, match="is not a steering-vectors/1 file"):
        load_vectors(path)


# ---- damaged files (issue 6) ----------------------------------------------------------------

def test_truncated_vectors_file_is_reextracted_when_the_sae_is_there(tmp_path):
    config = load_config(write_test_demo(tmp_path))
    path = save_vectors(extract_vectors(config, log=lambda m: None), config.vectors_path())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    messages = []
    vectors = vectors_for_config(config, log=messages.append)
    assert "cannot be read as a steering vectors file" in messages[0] and "extracting the vectors from the SAE now" in messages[0]
    assert staleness(vectors, config) == []


def test_truncated_vectors_file_without_an_sae_is_refused_with_the_fix(tmp_path):
    from dataclasses import replace

    config = load_config(write_test_demo(tmp_path))
    path = save_vectors(extract_vectors(config, log=lambda m: None), config.vectors_path())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VectorsError, match=r"cannot be read as a steering vectors file.*delete .* and run `python -m steering.cli.extract`"):
        vectors_for_config(replace(config, sae=None), log=lambda m: None)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda b: b"garbage!" * 10, id="garbage"),
    pytest.param(lambda b: b[:100], id="cut-in-header"),
    pytest.param(lambda b: b[:4], id="cut-in-length"),
])
def test_corrupt_sae_file_gives_a_format_error_at_extraction(tmp_path, damage):
    config = load_config(write_test_demo(tmp_path))
    weights = tmp_path / "sae" / "layer_15" / "sae_weights.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(SAEFormatError, match="sae_weights.safetensors"):
        vectors_for_config(config, log=lambda m: None)
