"""The steering operators ("modes") by name, and the conditional modifier a feature's edit may carry.

`MODES` is the one list every boundary accepts (demo.yaml, the service and named API, the OpenAI `steering`
object, the page's dropdown); `MODE_INFO` says what each one's strength means, since a strength in residual
units, an SAE activation and an angle in degrees are not interchangeable. The formulas are in
`steering/steer/math.py` and docs/steering-math.md. Pure Python: the config validates without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steering.config.problems import is_number, problem
from steering.keys import FeatureKey


@dataclass(frozen=True)
class Mode:
    """One operator: its name, a one-line summary (the page's dropdown shows it), what its strength is."""

    name: str
    summary: str
    unit: str
    """What the strength is measured in: residual units, SAE activation, or degrees."""
    limits: tuple[float, float] | None = None
    """The strengths it accepts (inclusive); None: any finite number."""
    zero_is_identity: bool = False
    """Strength 0 leaves the residual unchanged, so a plan may drop the edit."""


_ALL = (
    Mode("add", "add s along the feature's direction", "residual units", zero_is_identity=True),
    Mode("clamp", "set the component along the feature to exactly s (0 removes it)", "residual units"),
    Mode("pin", "set the SAE's activation of the feature to s (0 ablates it)", "SAE activation"),
    Mode("norm_add", "add s along the feature, then rescale to the residual's own norm", "residual units",
         zero_is_identity=True),
    Mode("angular", "rotate the residual to s degrees from the feature, keeping its norm (90 removes it)",
         "degrees", limits=(0.0, 180.0)),
    Mode("angular_adaptive", "angular, only where the residual already points toward the feature", "degrees",
         limits=(0.0, 180.0)),
    Mode("cap", "raise the component along the feature to at least s, never lower it", "residual units"),
)

MODE_INFO: dict[str, Mode] = {m.name: m for m in _ALL}
"""Every operator by name."""

MODES: tuple[str, ...] = tuple(MODE_INFO)
"""Steering modes, in the order a menu lists them."""


def strength_problem(mode: str, strength: float) -> str | None:
    """What is wrong with `strength` for `mode` (an angle outside 0..180), or None when it is fine."""
    found = MODE_INFO.get(mode)
    if found is None or found.limits is None:
        return None
    lo, hi = found.limits
    if lo <= strength <= hi:
        return None
    return f"is an angle for mode {mode} and must lie from {lo:g} to {hi:g} degrees"


@dataclass(frozen=True)
class Condition:
    """Steer a feature only at positions where `feature` fires above `above` (CAST-like conditional steering).

    `feature`'s activation is read by its SAE's own encoder rule, at its own layer (which must not be after
    the steered layer), from that layer's output before any edit at that layer; see docs/steering-math.md.
    """

    feature: FeatureKey
    above: float

    def to_dict(self) -> dict[str, Any]:
        return {"feature": str(self.feature), "above": self.above}


CONDITION_FORM = '{feature: "L15:123", above: 2.0}'


def condition_problems(value: Any, path: str, steered_layer: int | None) -> list[str]:
    """Problems of a condition as written (`{feature: "L15:123", above: 2.0}` or a `Condition`), each naming
    `path`; `steered_layer` (None: not known yet) is the layer it gates, which the condition may not follow."""
    if isinstance(value, Condition):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        return [problem(path, "expected a mapping", value,
                        f"write condition: {CONDITION_FORM}, or leave it out to steer every position")]
    problems = [problem(f"{path}.{k}", "unknown key", value[k], "remove it; a condition has feature and above")
                for k in value if k not in ("feature", "above")]
    key = None
    try:
        key = FeatureKey.parse(value.get("feature"))
    except ValueError:
        problems.append(problem(f"{path}.feature", "expected a feature key", value.get("feature"),
                                'write L, the layer, a colon and the feature index, e.g. feature: "L15:123"'))
    above = value.get("above")
    if not is_number(above) or not math.isfinite(above):
        problems.append(problem(f"{path}.above", "expected a finite number", above,
                                "write above: 2.0 (steer where the feature's activation is greater than this)"))
    if key is not None and steered_layer is not None and key.layer > steered_layer:
        problems.append(problem(f"{path}.feature", f"is read at layer {key.layer}, after the steered layer "
                                f"{steered_layer}, so it is not known when the edit runs", str(key),
                                f"use a feature at layer {steered_layer} or earlier"))
    return problems


def to_condition(value: Any) -> Condition:
    """A checked condition (`condition_problems` found nothing) as a `Condition`."""
    if isinstance(value, Condition):
        return value
    return Condition(FeatureKey.parse(value["feature"]), float(value["above"]))
