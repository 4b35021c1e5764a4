"""The check of a visitor's condition (steer a feature only where another fires) against this demo's SAEs."""

from __future__ import annotations

from steering.config import Condition
from steering.engine import Engine
from steering.keys import FeatureKey
from steering.service.errors import log
from steering.service.limits import UserError


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
