"""What one request steers: an `Edit` per feature and layer, gathered in a `SteeringPlan` by `build_plan`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
from torch import Tensor

from steering.config.modes import MODE_INFO, strength_problem
from steering.keys import FeatureKey
from steering.steer import math as steer_math

if TYPE_CHECKING:
    from steering.config import FeatureSpec
    from steering.steer.vectors import SteeringVector


@dataclass(frozen=True, eq=False)
class Gate:
    """An edit's condition: apply it only where feature `key` fires above `above`.

    `activation` reads the feature by its SAE's own rule from the output of layer `key.layer` before that
    layer's edits (docs/steering-math.md, "Conditional steering"); the layer must not follow the edit's.
    """

    key: FeatureKey
    above: float
    activation: Callable[[Tensor], Tensor]

    def __post_init__(self) -> None:
        if not math.isfinite(self.above):
            raise ValueError(f"a condition's threshold must be a finite number, got {self.above!r}")


_BY_DIRECTION = {"add": steer_math.add, "clamp": steer_math.clamp, "norm_add": steer_math.norm_add,
                 "angular": steer_math.angular, "angular_adaptive": steer_math.angular_adaptive, "cap": steer_math.cap}


@dataclass(frozen=True)
class Edit:
    """One feature's edit at one layer.

    `direction` is the unit decoder direction u; `norm` is ||d|| so pin can move along the raw
    direction d = norm * u; `activation` maps residuals (..., d) float32 to the feature's SAE
    activation (...), by the SAE's own rule (pin mode only); `gate` limits the edit to positions where
    another feature fires.
    """

    mode: str
    direction: Tensor
    strength: float
    norm: float = 1.0
    activation: Callable[[Tensor], Tensor] | None = None
    label: str = ""
    gate: Gate | None = None
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)  # device -> (u, norm*u) in float32

    def __post_init__(self) -> None:
        if self.mode not in steer_math.MODES:
            raise ValueError(f"unknown steering mode {self.mode!r}; use one of {', '.join(steer_math.MODES)}")
        if self.mode == "pin" and self.activation is None:
            raise ValueError("pin mode needs the feature's activation rule (encoder row or SAE)")
        wrong = strength_problem(self.mode, self.strength)
        if wrong is not None:
            raise ValueError(f"strength {self.strength!r} {wrong}")

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
        """The edit at every position of h, ignoring `gate` (the caller masks it: `apply.apply_layer_edits`)."""
        u, d = self._vectors(h.device)
        if self.mode == "pin":
            return steer_math.pin(h, d, self.activation(h.float()), self.strength)
        return _BY_DIRECTION[self.mode](h, u, self.strength)


@dataclass(frozen=True)
class SteeringPlan:
    """What to steer for one request: edits per layer (applied in order) and which positions."""

    edits: Mapping[int, Sequence[Edit]] = field(default_factory=dict)
    steer_special_tokens: bool = True
    generated_only: bool = False
    hooked_layers: list[int] = field(init=False, compare=False)
    """The layers a backend must see: those with edits and those where a condition is read."""

    def __post_init__(self) -> None:
        reads: dict[int, dict[FeatureKey, Callable[[Tensor], Tensor]]] = {}
        for layer, edits in self.edits.items():
            for e in edits:
                if e.gate is None:
                    continue
                if e.gate.key.layer > layer:
                    raise ValueError(f"the condition on {e.gate.key} is read at layer {e.gate.key.layer}, after the "
                                     f"steered layer {layer}; use a condition feature at layer {layer} or earlier")
                reads.setdefault(e.gate.key.layer, {}).setdefault(e.gate.key, e.gate.activation)
        object.__setattr__(self, "_reads", reads)
        object.__setattr__(self, "hooked_layers", sorted(set(reads).union(self.layers)))

    @property
    def layers(self) -> list[int]:
        """The layers with edits."""
        return sorted(layer for layer, edits in self.edits.items() if edits)

    def gates_read_at(self, layer: int) -> Mapping[FeatureKey, Callable[[Tensor], Tensor]]:
        """The condition features read at `layer` (before its edits), each with its activation rule."""
        return self._reads.get(layer, {})

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
    `m = mode or f.mode or default_mode`. A mode for which s = 0 changes nothing (add, norm_add) is
    left out at 0; clamp and pin at 0 are real edits (they remove or ablate the feature), so they
    stay. `vectors[f.key]` gives u and ||d||; `readers` holds the SAE activation rule of each pinned
    feature and of each feature a `f.condition` reads. Edits are grouped by layer in feature order
    (a layer applies them in that order).
    """
    readers = readers or {}
    edits: dict[int, list[Edit]] = {}
    for f in features:
        s = strengths.get(f.key)
        if s is None:
            continue
        m = mode or f.mode or default_mode
        if MODE_INFO[m].zero_is_identity and s == 0:
            continue
        v = vectors[f.key]
        c = f.condition
        gate = None if c is None else Gate(c.feature, c.above, readers[c.feature])
        edits.setdefault(f.layer, []).append(Edit(m, v.direction, float(s), v.norm, readers.get(f.key) if m == "pin" else None,
                                                  f.display_name, gate))
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
