"""A run of the steering evaluation, as a YAML file: what to steer, on which prompts, scored how.

    name: round4                    # the run directory: benchmarks/runs/<name> (default: the file's name)
    engine:
      config: ../demo.yaml          # the app config (model, SAEs, sampling settings), relative to this file
      device: cpu                   # dtype: float32, threads: 1 (torch threads)
      overrides: {steer_generated_only: true}   # top-level fields of the app config replaced for this run
    split: report2                  # data/splits/report2.yaml; report2@1 pins its version
    n_prompts: null                 # the split's first N prompts (null: all)
    seeds: [0, 1]
    max_new_tokens: 64
    baseline: true                  # also grade each concept's system-prompt baseline
    scorer: {kind: full, lexicon: 2, probe_layer: 25, probe_tokens: 48, fit_split: pick, fit_prompts: null,
             fit_seeds: [0, 1], shared_cache: true}    # kind light: inclusion and fluency only
    pick: {rule: margin}            # `pick` only: margin | first-round
    probes: {layers: [10, 25], concepts: [music]}      # `probes` only
    features:                       # each steered alone; `features: config`: the app config's, at their settings
      - layer: 15
        index: 8241
        mode: add                   # any of steering.config.MODES, or a list of them
        strength: [30, 32]          # or one number; left out: the app config's own setting of the feature
        concept: music              # left out: the concept its label names
        params: {}                  # more FeatureSpec fields, passed to the library as they are
      - layer: 20                   # a concept vector instead of an SAE feature (any layer, no SAE needed)
        vector: {phrase: dogs, source: generated}   # source: generated | written (inspection.concept_vector)
        mode: add
        strength: 40
        concept: dogs

Every feature runs at each (mode, strength) pair. `parse.load_run_config` checks everything a run needs before a
model is loaded and raises one `ConfigError` naming each bad field, its value and the fix; `RunConfig.to_dict` is
the resolved form a run directory keeps (versions pinned, features explicit), which runs again as it is."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from itertools import product
from pathlib import Path
from typing import Any

from steering.config import FeatureSpec
from steering.offline.eval.splits import split


@dataclass(frozen=True)
class EngineSpec:
    config: Path  # the app config, absolute
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScorerSpec:
    kind: str = "full"  # full | light
    lexicon: int = 2
    probe_layer: int = 25
    probe_tokens: int = 48
    probe_set: int = 1
    fit_split: str = "pick@1"
    fit_prompts: int | None = None
    fit_seeds: tuple[int, ...] = (0, 1)
    shared_cache: bool = True


@dataclass(frozen=True)
class ConceptRecipe:
    """A concept vector's recipe (`inspection.concept_vector.build_concept_vector`): the vector is a pure function
    of (layer, phrase, source, seed)."""

    phrase: str
    source: str = "generated"
    seed: int = 0


@dataclass(frozen=True)
class FeatureRun:
    """One feature (an SAE feature `index`, or a concept `vector` when index is None), steered alone at each
    (mode, strength) of `modes` x `strengths`."""

    layer: int
    index: int | None
    modes: tuple[str, ...]
    strengths: tuple[float, ...]
    concept: str
    label: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    vector: ConceptRecipe | None = None

    @property
    def key(self) -> str:
        if self.vector is not None:
            return f"L{self.layer}:cv:{self.vector.phrase}:{self.vector.source}"
        return f"L{self.layer}:{self.index}"

    @property
    def settings(self) -> list[tuple[str, float]]:
        return list(product(self.modes, self.strengths))

    def spec(self, mode: str, strength: float):
        """The library's `FeatureSpec` of one setting, `params` included."""
        return FeatureSpec(layer=self.layer, index=self.index, strength=strength, label=self.label or self.concept,
                           mode=mode, **self.params)


@dataclass(frozen=True)
class RunConfig:
    name: str
    engine: EngineSpec
    split: str  # name@version
    features: tuple[FeatureRun, ...]
    n_prompts: int | None = None
    seeds: tuple[int, ...] = (0, 1)
    max_new_tokens: int = 64
    baseline: bool = True
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    pick_rule: str = "margin"
    probes: Mapping[str, Any] | None = None  # {"layers": [...], "concepts": [...]}
    reconstructed: str | None = None  # how a config written after the fact was recovered

    def prompts(self) -> list[str]:
        return list(split(self.split).prompts[: self.n_prompts])

    def to_dict(self, folder: Path | None = None) -> dict:
        """The resolved form; the app config's path relative to `folder` (where this is written)."""
        cfg = str(self.engine.config if folder is None else os.path.relpath(self.engine.config, folder))
        out: dict[str, Any] = {"name": self.name}
        if self.reconstructed:
            out["reconstructed"] = self.reconstructed
        out["engine"] = {"config": cfg, "device": self.engine.device, "dtype": self.engine.dtype,
                         "threads": self.engine.threads, "overrides": dict(self.engine.overrides)}
        out.update(split=self.split, n_prompts=self.n_prompts, seeds=list(self.seeds), max_new_tokens=self.max_new_tokens,
                   baseline=self.baseline, scorer={f.name: (list(v) if isinstance(v := getattr(self.scorer, f.name), tuple)
                                                            else v) for f in fields(ScorerSpec)},
                   pick={"rule": self.pick_rule})
        if self.probes is not None:
            out["probes"] = {k: list(v) for k, v in self.probes.items()}
        out["features"] = [{"layer": f.layer, **({"index": f.index} if f.vector is None else
                                                  {"vector": {"phrase": f.vector.phrase, "source": f.vector.source,
                                                              **({"seed": f.vector.seed} if f.vector.seed else {})}}),
                            **({"label": f.label} if f.label else {}),
                            "concept": f.concept, "mode": _one(f.modes), "strength": _one(f.strengths),
                            **({"params": dict(f.params)} if f.params else {})} for f in self.features]
        return out


def _one(values: tuple) -> Any:
    return values[0] if len(values) == 1 else list(values)
