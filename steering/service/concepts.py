"""Concept vectors as steering items: a visitor's `ConceptChoice` (a recipe: layer, phrase, source; and a strength
and mode), the vectors built from recipes (`ConceptVectors`, one owner, bounded), and their edits in a plan.

A concept vector (`inspection.concept_vector`) is a pure function of its recipe (the examples are sampled with
fixed seeds), so a share link or an API call carries the recipe and any server rebuilds the same vector; no
visitor's vector can differ from another's for the same recipe, so sharing the cache is safe. It steers like a
feature of its layer in every mode but pin (it has no encoder row to read).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from steering.config import MODE_INFO, MODES
from steering.config.modes import strength_problem
from steering.inspection.concept_vector import SOURCES, ConceptVector, build_concept_vector, check_phrase
from steering.service.limits import UserError
from steering.steer.plan import Edit, SteeringPlan

CONCEPT_MODES = tuple(m for m in MODES if m != "pin")
MAX_CONCEPTS = 4
CONCEPT_FRACTION = 0.2
"""A new concept slider's strength, as a fraction of its layer's typical norm (the default features sit at
0.14-0.28)."""
KEPT = 32
"""Concept vectors kept (about 2 KiB each for SmolLM2, 16 KiB for an 8B model)."""


@dataclass(frozen=True)
class ConceptChoice:
    """Steer toward `phrase` with its concept vector at `layer`, built from `source` examples."""

    layer: int
    phrase: str
    source: str = "written"
    strength: float = 0.0
    mode: str = "add"
    enabled: bool = True

    @property
    def recipe(self) -> tuple[int, str, str]:
        return self.layer, self.phrase, self.source

    @property
    def name(self) -> str:
        return f"L{self.layer}:{self.phrase}"


def concept_choice(value: Any, where: str, n_layers: int) -> ConceptChoice:
    """`{"phrase": "dogs", "layer": 15, "source": "written", "strength": 40, "mode": "add"}`, each field checked by
    name (layer, source and mode have defaults: the inspector's layer is filled in by the caller)."""
    if not isinstance(value, dict):
        raise UserError(f"{where} must be an object like {{\"phrase\": \"dogs\", \"layer\": 15, \"strength\": 40}}, "
                        f"got {value!r}.")
    extra = sorted(set(value) - {"phrase", "layer", "source", "strength", "mode"})
    if extra:
        raise UserError(f"{where}.{extra[0]}: not a concept field (it would be ignored). Use phrase, layer, source, "
                        "strength and mode.")
    try:
        phrase = check_phrase(value.get("phrase"))
    except ValueError as exc:
        raise UserError(f"{where}.phrase: {exc}.") from None
    layer = value.get("layer")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise UserError(f"{where}.layer must be a whole number from 0 to {n_layers - 1}, got {layer!r}.")
    source = value.get("source", "written")
    if source not in SOURCES:
        raise UserError(f"{where}.source must be one of {', '.join(SOURCES)}, got {source!r}.")
    mode = value.get("mode", "add")
    if mode not in CONCEPT_MODES:
        raise UserError(f"{where}.mode must be one of {', '.join(CONCEPT_MODES)} (pin needs an SAE feature), got {mode!r}.")
    strength = value.get("strength", 0.0)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength != strength \
            or strength in (float("inf"), float("-inf")) or strength_problem(mode, float(strength)) is not None:
        raise UserError(f"{where}.strength must be a finite number that mode {mode} accepts, got {strength!r}.")
    return ConceptChoice(layer, phrase, source, float(strength), mode)


def concept_choices(value: Any, layer: int, n_layers: int, name: str = "concepts") -> tuple[ConceptChoice, ...]:
    """A named-API list of concepts (None: none), each at `layer` unless it names one."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CONCEPTS:
        raise UserError(f"{name} must be a list of at most {MAX_CONCEPTS} objects like "
                        f"{{\"phrase\": \"dogs\", \"strength\": 40}}, got {value!r}.")
    return tuple(concept_choice({"layer": layer, **v} if isinstance(v, dict) else v, f"{name}[{i}]", n_layers)
                 for i, v in enumerate(value))


class ConceptVectors:
    """Concept vectors by recipe, built on first use (`build`), the latest `KEPT` kept; thread-safe, one build
    of a recipe at a time."""

    def __init__(self, build: Callable[[int, str, str], ConceptVector], kept: int = KEPT):
        self.build, self.kept = build, kept
        self._found: OrderedDict[tuple[int, str, str], ConceptVector] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine) -> "ConceptVectors":
        def build(layer: int, phrase: str, source: str) -> ConceptVector:
            decoder = engine.sae(layer).W_dec if engine.config.sae is not None else None
            return build_concept_vector(engine, phrase, layer, source=source, decoder=decoder)
        return cls(build)

    def get(self, layer: int, phrase: str, source: str) -> ConceptVector:
        key = (layer, phrase, source)
        with self._lock:
            found = self._found.get(key)
            if found is None:
                found = self.build(layer, phrase, source)
                self._found[key] = found
            self._found.move_to_end(key)
            while len(self._found) > self.kept:
                self._found.popitem(last=False)
        return found


def with_concepts(plan: SteeringPlan, concepts: list[tuple[ConceptChoice, ConceptVector]]) -> SteeringPlan:
    """`plan` with each concept's edit after its layer's feature edits: `Edit(mode, u, strength)` with u the
    concept vector's unit direction (add moves `h` by `strength` along u, as for a feature)."""
    if not concepts:
        return plan
    edits = {layer: list(rows) for layer, rows in plan.edits.items()}
    for c, cv in concepts:
        if MODE_INFO[c.mode].zero_is_identity and c.strength == 0:
            continue
        edits.setdefault(c.layer, []).append(Edit(c.mode, cv.direction, c.strength, 1.0, label=f"concept: {c.phrase}"))
    return SteeringPlan(edits, steer_special_tokens=plan.steer_special_tokens, generated_only=plan.generated_only)


def concept_view(cv: ConceptVector, label: Callable[[int, int], str]) -> dict:
    """What the API shows of a concept vector: its recipe, size and the SAE features it is made of."""
    return {
        "phrase": cv.phrase, "layer": cv.layer, "source": cv.source, "norm": round(cv.norm, 4),
        "positions": list(cv.positions),
        "top_features": [{"index": i, "label": label(cv.layer, i), "cosine": round(c, 4)} for i, c in cv.top],
        "decomposition": None if cv.decomposition is None else {
            "explained": round(cv.decomposition.explained, 4),
            "terms": [{"index": i, "label": label(cv.layer, i), "coefficient": round(c, 4)}
                      for i, c in cv.decomposition.terms]},
    }
