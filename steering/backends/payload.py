"""A `SteeringPlan` as plain data, so it crosses into vLLM's engine process (msgpack: no tensors, no pickle).

`to_payload` runs where the plan is built; `from_payload` rebuilds the same `Edit`s in the worker.
A pin edit whose SAE reads each feature on its own carries its encoder rule; a pin on a TopK-style
SAE (one feature's activation depends on all others) names the SAE folder, which the worker opens once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from steering.steer.plan import Edit, SteeringPlan


def to_payload(plan: SteeringPlan, sae_source: Callable[[int], dict] | None = None) -> dict:
    """`plan` as lists and numbers; `sae_source(layer)` says where the SAE of a TopK pin is (`{"folder", "format",
    "k"}` for a vLLM worker; a remote server uses its own SAE of that layer)."""
    layers = {}
    for layer, edits in plan.edits.items():
        rows = []
        for e in edits:
            row = {"mode": e.mode, "direction": e.direction.float().tolist(), "strength": float(e.strength),
                   "norm": float(e.norm), "label": e.label}
            if e.mode == "pin":
                row["pin"] = _pin_source(e, layer, sae_source)
            rows.append(row)
        if rows:
            layers[str(layer)] = rows
    return {"layers": layers, "steer_special_tokens": plan.steer_special_tokens, "generated_only": plan.generated_only}


def _pin_source(edit: Edit, layer: int, sae_source) -> dict:
    from steering.sae import TopKFeature

    reader = edit.activation
    if isinstance(reader, TopKFeature):
        if sae_source is None:
            raise ValueError("pin on a TopK SAE needs the SAE's folder to reach the serving engine")
        return {"sae": {**sae_source(layer), "layer": layer}, "index": reader.index}
    rule = getattr(reader, "__self__", None)  # a FeatureRule's bound `activation`
    if rule is None or not hasattr(rule, "__dataclass_fields__"):
        raise ValueError(f"pin reader {reader!r} cannot be sent to the serving engine")
    return {"rule": {k: _plain(getattr(rule, k)) for k in rule.__dataclass_fields__}}


_TENSORS = ("w_enc", "b_enc", "b_dec", "threshold")


def _plain(value):
    return value.float().tolist() if isinstance(value, torch.Tensor) else value


def from_payload(payload: dict, open_sae: Callable[[dict], object] | None = None) -> SteeringPlan:
    """The plan `to_payload` described; `open_sae(source)` returns the SAE for TopK pins (cached by the caller)."""
    from steering.sae import TopKFeature
    from steering.sae.core import FeatureRule

    edits: dict[int, list[Edit]] = {}
    for layer, rows in payload["layers"].items():
        for row in rows:
            reader = None
            pin = row.get("pin")
            if pin is not None and "rule" in pin:
                fields = {k: torch.tensor(v, dtype=torch.float32) if k in _TENSORS and v is not None else v
                          for k, v in pin["rule"].items()}
                reader = FeatureRule(**fields).activation
            elif pin is not None:
                reader = TopKFeature(open_sae(pin["sae"]), int(pin["index"]))
            edits.setdefault(int(layer), []).append(
                Edit(row["mode"], torch.tensor(row["direction"], dtype=torch.float32), float(row["strength"]),
                     float(row["norm"]), reader, row.get("label", "")))
    return SteeringPlan(edits, steer_special_tokens=bool(payload["steer_special_tokens"]),
                        generated_only=bool(payload["generated_only"]))
