"""A visitor's features: their own mode and condition over the configured ones (`as_visitor_set`), and the
check of a condition (steer a feature only where another fires) against this demo's SAEs."""

from __future__ import annotations

import math
from dataclasses import replace

from steering.config import MODE_INFO, Condition, DemoConfig, FeatureSpec
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.service.errors import log
from steering.service.limits import UserError
from steering.service.setup import SteeringSetup


def check_condition(engine: Engine, key: FeatureKey, condition: Condition) -> None:
    """A condition on feature `key` this demo can read: an SAE, its feature inside it, not after `key`'s layer."""
    c = condition.feature
    if engine.config.sae is None:
        raise UserError(f"The condition on {key} reads {c} by the SAE's encoder, and this demo has no SAE: remove it.")
    if c.layer > key.layer:
        raise UserError(f"The condition on {key} reads {c} at layer {c.layer}, after the steered layer {key.layer}: "
                        f"use a feature at layer {key.layer} or earlier.")
    try:
        width = engine.sae_width(c.layer)
    except Exception as exc:  # no SAE for that layer: the server's paths stay in the log
        log.warning("condition feature %s unavailable: %s", c, exc)
        raise UserError(f"The condition on {key} reads {c}, but this demo has no SAE at layer {c.layer}.") from None
    if not 0 <= c.index < width:
        raise UserError(f"The condition on {key} reads {c}, outside the SAE of layer {c.layer}: use 0 to {width - 1}.")


def as_visitor_set(f: FeatureSpec, setup: SteeringSetup, config: DemoConfig) -> FeatureSpec:
    """`f` with the visitor's mode and condition. A recommended strength and range written in another unit
    (residual units for an angle mode, or back) no longer mean anything: the range goes, the strength is
    brought inside the new mode's limits."""
    choice = setup.modes.get(f.key)
    mode = choice.mode if choice is not None else f.mode
    condition = setup.conditions[f.key] if f.key in setup.conditions else f.condition
    if mode == f.mode and condition == f.condition:
        return f
    before, after = MODE_INFO[config.feature_mode(f)], MODE_INFO[mode or config.mode]
    if before.unit == after.unit:
        return replace(f, mode=mode, condition=condition)
    lo, hi = after.limits or (-math.inf, math.inf)
    return replace(f, mode=mode, condition=condition, range=None, strength=min(max(f.strength, lo), hi))
