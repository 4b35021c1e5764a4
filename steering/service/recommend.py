"""A feature's recommended mode and strength (`inspection.calibrate`) for the page and the named API.

Read first from what the SAE folder ships (`calibration.json`) and from the cache of earlier sweeps, else computed
on request by the short sweep (6 prompts, 32 tokens, 8 settings in one batch: about a minute on a laptop CPU,
seconds on a GPU) and cached, so each feature is swept once per model and SAE. A visitor who adds a feature
starts at its recommendation when one is known (`start_at`).
"""

from __future__ import annotations

import threading
from dataclasses import replace

from steering.engine import Engine
from steering.inspection.calibrate import Calibration, CalibrationCache, calibrate, feature_words
from steering.keys import FeatureKey
from steering.model.embedded import cache_root
from steering.service.limits import UserError
from steering.service.setup import ModeChoice, SteeringSetup


class Recommendations:
    """The calibrations of one engine's SAE: shipped, cached, or swept on request (one sweep at a time)."""

    def __init__(self, engine: Engine, folders=()):
        identity = {"model": engine.config.model, "sae": engine.config.sae.to_dict() if engine.config.sae else None}
        self.engine = engine
        self.cache = CalibrationCache.for_sae(cache_root(), identity, list(folders))
        self._lock = threading.Lock()

    def get(self, key: FeatureKey) -> Calibration | None:
        return self.cache.get(key.layer, key.index)

    def compute(self, key: FeatureKey, label: str | None, says: list[str]) -> Calibration:
        """The feature's calibration, swept now if it is not known yet."""
        if self.engine.model is None:
            raise UserError(f"A calibration sweep scores answers with the model's own log-probabilities, which the "
                            f"{self.engine.backend.name} backend does not expose here: run it on backend: hooks.")
        words = feature_words(label, says)
        if not words:
            raise UserError(f"Feature {key} has no label and no tokens it raises, so a sweep would have no words to "
                            "look for in the answers: label it first, or steer it by hand.")
        with self._lock:
            found = self.get(key)
            if found is None:
                found = calibrate(self.engine, key.layer, key.index, words)
                self.cache.put(found)
        return found


def start_at(setup: SteeringSetup, key: FeatureKey, c: Calibration) -> SteeringSetup:
    """`setup` with feature `key` at its recommended strength and mode."""
    return replace(setup, strengths={**setup.strengths, key: c.strength}, modes={**setup.modes, key: ModeChoice(c.mode)})
