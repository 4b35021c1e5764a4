"""What one request steers: an `Edit` per feature and layer, gathered in a `SteeringPlan` by `build_plan`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
from torch import Tensor

from steering.keys import FeatureKey
from steering.steer import math as steer_math

if TYPE_CHECKING:
    from steering.config import FeatureSpec
    from steering.steer.vectors import SteeringVector


@dataclass(frozen=True)
class Edit:
    """One feature's edit at one layer.

    `direction` is the unit decoder direction u; `norm` is ||d|| so pin can move along the raw
    direction d = norm * u; `activation` maps residuals (..., d) float32 to the feature's SAE
    activation (...), by the SAE's own rule (pin mode only).
    """

    mode: str
    direction: Tensor
    strength: float
    norm: float = 1.0
    activation: Callable[[Tensor], Tensor] | None = None
    label: str = ""
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)  # device -> (u, norm*u) in float32

    def __post_init__(self) -> None:
        if self.mode not in steer_math.MODES:
            raise ValueError(f"unknown steering mode {self.mode!r}; use one of {', '.join(steer_math.MODES)}")
        if self.mode == "pin" and self.activation is None:
            raise ValueError("pin mode needs the feature's activation rule (encoder row or SAE)")

    def _vectors(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(u, norm*u) in float32 on `device`, made once rather than at every decoding step."""
        found = self._on_device.get(device)
        if found is None:
            u = self.direction.to(device).float()
            found = self._on_device[device] = (u, self.norm * u)
        return found

    def pre_shift(self, device: torch.device) -> Tensor:
        """For a pin on a TopK feature: how this edit's direction moves the SAE's pre-activations."""
        key = ("shift", device)
        found = self._on_device.get(key)
        if found is None:
            found = self._on_device[key] = self.activation.shift(self._vectors(device)[1])
        return found

    def apply(self, h: Tensor) -> Tensor:
        u, d = self._vectors(h.device)
        if self.mode == "add":
            return steer_math.add(h, u, self.strength)
        if self.mode == "clamp":
            return steer_math.clamp(h, u, self.strength)
        return steer_math.pin(h, d, self.activation(h.float()), self.strength)


@dataclass(frozen=True)
class SteeringPlan:
    """What to steer for one request: edits per layer (applied in order) and which positions."""

    edits: Mapping[int, Sequence[Edit]] = field(default_factory=dict)
    steer_special_tokens: bool = True
    generated_only: bool = False

    @property
    def layers(self) -> list[int]:
        return sorted(layer for layer, edits in self.edits.items() if edits)

    @property
    def is_empty(self) -> bool:
        return not self.layers


def build_plan(
    features: Sequence["FeatureSpec"],
    strengths: Mapping[FeatureKey, float | None],
    vectors: Mapping[FeatureKey, "SteeringVector"],
    readers: Mapping[FeatureKey, Callable[[Tensor], Tensor]] | None = None,
    *,
    default_mode: str = "add",
    mode: str | None = None,
    steer_special_tokens: bool = True,
    generated_only: bool = False,
) -> SteeringPlan:
    """The edits of one request, as a pure function of already validated inputs.

    Feature f gets strength `s = strengths[f.key]` (missing or None: off) and mode
    `m = mode or f.mode or default_mode`. Add at s = 0 is a no-op and is left out; clamp and pin
    at 0 are real edits (they remove or ablate the feature), so they stay. `vectors[f.key]` gives
    u and ||d||; a pinned feature also needs `readers[f.key]`, its SAE activation rule. Edits are
    grouped by layer in feature order (a layer applies them in that order).
    """
    edits: dict[int, list[Edit]] = {}
    for f in features:
        s = strengths.get(f.key)
        if s is None:
            continue
        m = mode or f.mode or default_mode
        if m == "add" and s == 0:
            continue
        v = vectors[f.key]
        reader = readers.get(f.key) if (m == "pin" and readers is not None) else None
        edits.setdefault(f.layer, []).append(Edit(m, v.direction, float(s), v.norm, reader, f.display_name))
    return SteeringPlan(edits, steer_special_tokens=steer_special_tokens, generated_only=generated_only)


def resolve_strengths(strengths, features: Sequence["FeatureSpec"]) -> dict[FeatureKey, float | None]:
    """Strengths keyed by FeatureKey, for a caller's `strengths`: None (the features' defaults, off where
    `enabled: false`), a mapping by key (`"L15:3"` or FeatureKey) or label, or one value per feature.
    Unknown keys and non-finite values are errors that name them."""
    resolved = {f.key: f.strength if f.enabled else None for f in features}
    if strengths is None:
        return resolved
    if isinstance(strengths, Mapping):
        by_name = {str(f.key): f for f in features} | {f.label: f for f in features if f.label}
        given = {}
        for key, value in strengths.items():
            found = by_name.get(str(key).strip() if isinstance(key, (str, FeatureKey)) else key)
            if found is None:
                raise KeyError(f"unknown feature {key!r}; known: {', '.join(by_name) or 'none'}")
            given[found.key] = value
    else:
        values = list(strengths)
        if len(values) != len(features):
            raise ValueError(f"got {len(values)} strengths for {len(features)} features; give one per feature or a mapping")
        given = {f.key: v for f, v in zip(features, values)}
    for key, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ValueError(f"strength of {key} must be a finite number, got {value!r}")
        resolved[key] = None if value is None else float(value)
    return resolved
