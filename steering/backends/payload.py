"""A `SteeringPlan` as plain data, so it crosses into vLLM's engine process (msgpack: no tensors, no pickle).

`to_payload` runs where the plan is built; `from_payload` rebuilds the same `Edit`s in the worker.
A feature read by its SAE (a pin's own feature, a condition's feature) travels as a reader: an SAE that
reads each feature on its own sends its encoder rule; a TopK-style SAE (one feature's activation depends
on all others) names the SAE folder, which the worker opens once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from steering.keys import FeatureKey
from steering.steer.plan import Edit, Gate, SteeringPlan


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
                row["pin"] = _reader_source(e.activation, layer, sae_source)
            if e.gate is not None:
                row["gate"] = {"key": [e.gate.key.layer, e.gate.key.index], "above": float(e.gate.above),
                               "reader": _reader_source(e.gate.activation, e.gate.key.layer, sae_source)}
            rows.append(row)
        if rows:
            layers[str(layer)] = rows
    return {"layers": layers, "steer_special_tokens": plan.steer_special_tokens, "generated_only": plan.generated_only}


def _reader_source(reader, layer: int, sae_source) -> dict:
    """How the worker rebuilds an activation reader of a feature at `layer`."""
    from steering.sae import TopKFeature

    if isinstance(reader, TopKFeature):
        if sae_source is None:
            raise ValueError("reading a feature of a TopK SAE (pin, condition) needs the SAE's folder to reach the serving engine")
        return {"sae": {**sae_source(layer), "layer": layer}, "index": reader.index}
    rule = getattr(reader, "__self__", None)  # a FeatureRule's bound `activation`
    if rule is None or not hasattr(rule, "__dataclass_fields__"):
        raise ValueError(f"feature reader {reader!r} cannot be sent to the serving engine")
    return {"rule": {k: _plain(getattr(rule, k)) for k in rule.__dataclass_fields__}}


_TENSORS = ("w_enc", "b_enc", "b_dec", "threshold")


def _plain(value):
    return value.float().tolist() if isinstance(value, torch.Tensor) else value


def from_payload(payload: dict, open_sae: Callable[[dict], object] | None = None) -> SteeringPlan:
    """The plan `to_payload` described; `open_sae(source)` returns the SAE for TopK pins (cached by the caller)."""
    edits: dict[int, list[Edit]] = {}
    for layer, rows in payload["layers"].items():
        for row in rows:
            pin, gate = row.get("pin"), row.get("gate")
            reader = None if pin is None else _reader(pin, open_sae)
            if gate is not None:
                gate = Gate(FeatureKey(*map(int, gate["key"])), float(gate["above"]), _reader(gate["reader"], open_sae))
            edits.setdefault(int(layer), []).append(
                Edit(row["mode"], torch.tensor(row["direction"], dtype=torch.float32), float(row["strength"]),
                     float(row["norm"]), reader, row.get("label", ""), gate))
    return SteeringPlan(edits, steer_special_tokens=bool(payload["steer_special_tokens"]),
                        generated_only=bool(payload["generated_only"]))


def _reader(source: dict, open_sae):
    from steering.sae import TopKFeature
    from steering.sae.core import FeatureRule

    if "rule" in source:
        fields = {k: torch.tensor(v, dtype=torch.float32) if k in _TENSORS and v is not None else v
                  for k, v in source["rule"].items()}
        return FeatureRule(**fields).activation
    return TopKFeature(open_sae(source["sae"]), int(source["index"]))
