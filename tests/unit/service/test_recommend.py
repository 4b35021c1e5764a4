"""A feature's recommendation in the service: read from the SAE folder's calibration.json (or the cache), an added
feature starts at it, its card says it, and a sweep is refused where it cannot run; model-free (the sweep itself
is tests/integration/test_calibrate_and_concepts.py)."""

import json
from unittest.mock import MagicMock

import pytest

from steering.config import FeatureSpec, GenerationSettings
from steering.inspection.calibrate import Calibration
from steering.keys import FeatureKey
from steering.service.demo import DemoService
from steering.service.limits import UserError
from steering.service.recommend import Recommendations, start_at
from steering.service.setup import ModeChoice, SteeringSetup

SHIPPED = Calibration(15, 9, "clamp", 21.5, 5 / 6, 1.8, True, ("dog", "dogs"), prompts=6)


@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "calibration.json").write_text(json.dumps({"L15:9": SHIPPED.to_dict()}))
    engine = MagicMock()
    engine.vectors.vectors = {}
    engine.features = [FeatureSpec(layer=15, index=3, strength=0.0)]
    engine.default_strengths.return_value = {"L15:3": 0.0}
    engine.config.generation = GenerationSettings()
    engine.config.model = "m"
    engine.config.sae.to_dict.return_value = {"source": "local"}
    engine.config.feature_mode.return_value = "add"
    engine.inspector_layer, engine.n_layers = 15, 30
    engine.sae_width.return_value = 256
    engine.model = None
    engine.backend.name = "vllm"
    service = DemoService(engine, recommendations=Recommendations(engine, [folder]))
    service.norms = lambda features: {15: 100.0}
    return service


def test_a_shipped_calibration_is_read_and_the_cache_comes_first(service, tmp_path):
    recs = service.recommendations
    assert recs.get(FeatureKey(15, 9)) == SHIPPED and recs.get(FeatureKey(15, 10)) is None
    mine = Calibration(15, 9, "add", 30.0, 1.0, 1.5, True, ("dog",))
    recs.cache.put(mine)
    assert recs.get(FeatureKey(15, 9)) == mine


def test_an_added_feature_starts_at_its_recommendation(service):
    setup, said = service.add_feature(SteeringSetup(), 9, 12)
    key = FeatureKey(15, 9)
    assert setup.strengths[key] == 21.5 and setup.modes[key] == ModeChoice("clamp")
    assert "recommended clamp 21.5: 83% of 6 answers say it at fluency ratio 1.80 (meets the target" in said
    plain, said = service.add_feature(SteeringSetup(), 10, 12)
    assert FeatureKey(15, 10) not in plain.strengths and "Set its strength" in said


def test_start_at_keeps_every_other_setting():
    before = SteeringSetup(strengths={"L15:3": 4.0}, modes={"L15:3": "pin"})
    after = start_at(before, FeatureKey(15, 9), SHIPPED)
    assert after.strengths == {FeatureKey(15, 3): 4.0, FeatureKey(15, 9): 21.5}
    assert after.modes == {FeatureKey(15, 3): ModeChoice("pin"), FeatureKey(15, 9): ModeChoice("clamp")}


def test_a_sweep_where_the_backend_has_no_model_here_is_refused_by_name(service):
    with pytest.raises(UserError, match="the vllm backend does not expose here: run it on backend: hooks"):
        service.recommendations.compute(FeatureKey(15, 10), "dogs", [])


def test_a_feature_with_no_words_cannot_be_swept(service):
    service.engine.model = object()
    with pytest.raises(UserError, match="no label and no tokens it raises"):
        service.recommendations.compute(FeatureKey(15, 10), None, [])
