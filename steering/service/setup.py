"""A visitor's steering setup, from a named-API call (`from_api`); share links are `links.py`.

A feature's mode is a `ModeChoice`: the mode's name and its parameters (none for add, clamp and pin), so a
mode that needs parameters travels through the page, the API and links without a new field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from steering.config import MODES, Condition, GenerationSettings
from steering.keys import FeatureKey
from steering.service import inputs
from steering.service.concepts import ConceptChoice
from steering.service.limits import UserError
from steering.service.messages import generation_settings


@dataclass(frozen=True)
class ModeChoice:
    """The mode one feature is steered with, and that mode's parameters (empty for add, clamp and pin)."""

    mode: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SteeringSetup:
    """Everything one visitor has set: per request, never shared between visitors."""

    strengths: Mapping[FeatureKey, float | None] = field(default_factory=dict)
    mode: str | None = None
    """One mode for every feature without a choice in `modes`; None: each feature's configured mode."""
    custom: tuple[FeatureKey, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    compare: bool = False
    modes: Mapping[FeatureKey, ModeChoice] = field(default_factory=dict)
    """The visitor's mode for a feature, over `mode` and the configured one."""
    conditions: Mapping[FeatureKey, Condition | None] = field(default_factory=dict)
    """The visitor's condition per feature, over the configured one (None: steer every position)."""
    concepts: tuple[ConceptChoice, ...] = ()
    """Concept vectors the visitor steers with, after the features (`service.concepts`)."""

    def __post_init__(self) -> None:
        """Feature keys given as text (`"L15:3"`) or pairs become `FeatureKey`s, here and nowhere else."""
        object.__setattr__(self, "strengths", {FeatureKey.parse(k): v for k, v in self.strengths.items()})
        object.__setattr__(self, "custom", tuple(FeatureKey.parse(k) for k in self.custom))
        object.__setattr__(self, "conditions", {FeatureKey.parse(k): v for k, v in self.conditions.items()})
        object.__setattr__(self, "modes", {FeatureKey.parse(k): v if isinstance(v, ModeChoice) else ModeChoice(v)
                                           for k, v in self.modes.items()})

    def mode_of(self, key: FeatureKey, configured: str) -> ModeChoice:
        """The mode feature `key` is steered with; `configured` is its mode in the config."""
        return self.modes.get(key) or ModeChoice(self.mode or configured)


def parse_key(text: str) -> FeatureKey:
    """`L15:123` -> FeatureKey(15, 123) (`FeatureKey.parse`, kept under the share link's name)."""
    return FeatureKey.parse(text)


def mode_choice(value: Any, name: str) -> ModeChoice:
    """A mode by name, or `{"mode": name, ...parameters}`; add, clamp and pin take no parameters."""
    if isinstance(value, Mapping):
        params = {k: v for k, v in value.items() if k != "mode"}
        mode = inputs.choice(value.get("mode"), f"{name}.mode", MODES)
        if params:
            raise UserError(f"{name}: mode {mode} takes no parameters, got {inputs.shown(params)}. Remove them.")
        return ModeChoice(mode)
    return ModeChoice(inputs.choice(value, name, MODES))


def from_api(defaults: SteeringSetup, known: Callable[[tuple[FeatureKey, ...]], Sequence[FeatureKey]], strengths, mode,
             add_features, generation: Mapping[str, Any], modes=None) -> SteeringSetup:
    """The setup a named-API call describes, each argument checked by name; None keeps the default.

    `known(added)` lists the features a strength or a mode may name (the configured ones and `added`): any
    other is refused, since it would steer nothing while the caller believes it did. A strength may be an
    object `{"strength": 40, "mode": "cap", "condition": {"feature": "L15:9", "above": 2}}` that also sets
    that feature's own mode and condition.
    """
    custom = inputs.feature_keys(add_features, "add_features")
    mode = inputs.choice("own" if mode is None else mode, "mode", (*MODES, "own"))
    given, inline, conditions = inputs.feature_settings(strengths, None if mode == "own" else mode)
    here = list(known(custom))
    inputs.known_keys(list(given), here, "strengths", "add a feature with add_features first")
    chosen = _api_modes(modes)
    both = sorted(set(inline) & set(chosen))
    if both:
        raise UserError(f"modes[{both[0]}]: the strength object of {both[0]} also sets its mode. Set it in one place.")
    chosen |= {k: ModeChoice(m) for k, m in inline.items()}
    inputs.known_keys(list(chosen), here, "modes", "add a feature with add_features first")
    settings = generation_settings({k: v for k, v in generation.items() if v is not None}, defaults.generation)
    return replace(defaults, strengths=dict(defaults.strengths) | given, mode=None if mode == "own" else mode, custom=custom,
                   generation=settings, modes=dict(defaults.modes) | chosen,
                   conditions=dict(defaults.conditions) | conditions)


def _api_modes(value: Any) -> dict[FeatureKey, ModeChoice]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise inputs.refuse("modes", 'an object of feature key -> mode, e.g. {"L15:3": "clamp"}', value)
    return {inputs.feature_key(k, "modes"): mode_choice(v, f"modes[{inputs.shown(k)}]") for k, v in value.items()}
