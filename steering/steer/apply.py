"""How one request's plan edits a layer's output: which positions, and the edits in order.

Positions are tracked by absolute index (a per-layer counter of tokens seen in this request),
not by the current forward's length, which is 1 during cached decoding. In a batch, row b's
positions start at minus its left padding, so they mean what they would for the request alone.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from steering.keys import FeatureKey
from steering.sae import TopKFeature
from steering.steer import math as steer_math
from steering.steer.plan import Edit, SteeringPlan


class RequestEdits:
    """Per-request position bookkeeping; lives only inside one `steering()` block."""

    def __init__(self, plan: SteeringPlan, prompt_ids: Tensor | None, special_ids: Iterable[int] | None, offset: int = 0):
        self.plan = plan
        self.offset = offset  # left padding of this row in a batch: its positions start at -offset
        self.seen: dict[int, int] = {}
        self.gate_values: dict[FeatureKey, Tensor] = {}  # condition features' activations in the current forward
        self.prompt_len: int | None = None if prompt_ids is None else int(prompt_ids.shape[-1])
        self.special: Tensor | None = None
        if not plan.steer_special_tokens and prompt_ids is not None and special_ids:
            ids = prompt_ids.reshape(-1).cpu()
            self.special = torch.isin(ids, torch.tensor(sorted(special_ids), dtype=ids.dtype))  # (T_prompt,)

    def mask(self, layer: int, T: int, device: torch.device) -> Tensor | None:
        start = self.seen.get(layer, -self.offset)
        self.seen[layer] = start + T
        if self.prompt_len is None:
            self.prompt_len = T  # the first forward through the model is the prompt
        if self.plan.steer_special_tokens and not self.plan.generated_only and start >= 0:
            return None
        pos = torch.arange(start, start + T)  # (T,) absolute positions; padding is negative
        keep = pos >= 0
        if self.plan.generated_only:
            keep &= pos >= self.prompt_len
        if self.special is not None:
            in_prompt = (pos >= 0) & (pos < self.special.shape[0])
            is_special = torch.zeros(T, dtype=torch.bool)
            is_special[in_prompt] = self.special[pos[in_prompt]]
            keep &= ~is_special
        return keep.to(device)

    def apply(self, layer: int, hidden: Tensor) -> Tensor:
        if not self.plan.edits.get(layer):
            return apply_layer(self.plan, layer, hidden, self.gate_values)  # a condition read here, if any
        return apply_layer(self.plan, layer, hidden, self.gate_values, self.mask(layer, hidden.shape[-2], hidden.device))


def apply_layer(plan: SteeringPlan, layer: int, hidden: Tensor, gate_values: dict[FeatureKey, Tensor],
                mask: Tensor | None = None) -> Tensor:
    """One layer's part of `plan` on its output `hidden` (..., T, d): first the condition features read here
    are stored in `gate_values` (from `hidden`, before any edit), then the layer's edits apply where `mask`
    allows (None: every position), each gated edit only where its condition fires. `gate_values` lives for
    one forward pass, so a condition read at an earlier layer is there when a later layer needs it."""
    for key, read in plan.gates_read_at(layer).items():
        gate_values[key] = read(hidden.float())
    edits = plan.edits.get(layer)
    if not edits or (mask is not None and not bool(mask.any())):
        return hidden
    return steer_math.masked(hidden, apply_layer_edits(edits, hidden, gate_values), mask)


def apply_layer_edits(edits: Sequence[Edit], hidden: Tensor, gate_values: Mapping[FeatureKey, Tensor] | None = None) -> Tensor:
    """The edits of one layer, in order; a gated edit keeps its result only where its condition feature's
    value in `gate_values` passes the threshold. Pins of TopK features of one SAE share one encoder product:
    each later pin reads pre-activations moved by the earlier pins' edits (exact, since they are
    affine in the residual), instead of encoding again; fp32 residuals only, so rounding stays
    at float32 level."""
    out, pre, pre_sae = hidden, None, None
    for edit in edits:
        reader = edit.activation
        if edit.gate is not None:
            if gate_values is None or edit.gate.key not in gate_values:
                raise ValueError(f"the condition on {edit.gate.key} was not read before this edit: apply the plan "
                                 "layer by layer (apply_layer)")
            out, pre = steer_math.conditional(out, edit.apply(out), gate_values[edit.gate.key], edit.gate.above), None
            continue
        if edit.mode != "pin" or not isinstance(reader, TopKFeature) or hidden.dtype != torch.float32:
            out, pre = edit.apply(out), None
            continue
        if pre is None or pre_sae is not reader.sae:
            pre, pre_sae = reader.pre(out), reader.sae
        a = reader.from_pre(pre)
        _, d = edit._vectors(out.device)
        out = steer_math.pin(out, d, a, edit.strength)
        pre = pre + (edit.strength - a).unsqueeze(-1) * edit.pre_shift(out.device)
    return out


class RowsEdits:
    """Per-row steering of one batched forward: row b gets only its own request's edits."""

    def __init__(self, rows: Sequence[RequestEdits | None]):
        self.rows = list(rows)

    def apply(self, layer: int, hidden: Tensor) -> Tensor:
        out = hidden
        for b, row in enumerate(self.rows):
            if row is None or layer not in row.plan.hooked_layers:
                continue
            own = hidden[b : b + 1]
            edited = row.apply(layer, own)
            if edited is not own:
                if out is hidden:
                    out = hidden.clone()
                out[b : b + 1] = edited
        return out
