"""Request-scoped steering and residual capture through one permanent hook per decoder layer.

Why not register hooks per request: a forward hook on a shared model fires for every thread
using it, so per-request hooks leak one visitor's steering into another's chat, and a hook
left behind by an exception keeps steering later requests. Instead `attach` registers one
dispatching hook per decoder layer, once, all-or-nothing; each hook reads the state of the
*thread running the forward pass* and does nothing when that thread has no active request.
`steering()` and `capture_residual()` set that per-thread state and always clear it in
`finally`, so scope ends with the `with` block whatever happens inside it.

Positions are tracked by absolute index (a per-layer counter of tokens seen in this request),
not by the current forward's length, which is 1 during cached decoding.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from . import steer_math
from .models import decoder_layers
from .sae import TopKFeature


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


class _SteerState:
    """Per-request position bookkeeping; lives only inside one `steering()` block."""

    def __init__(self, plan: SteeringPlan, prompt_ids: Tensor | None, special_ids: Iterable[int] | None, offset: int = 0):
        self.plan = plan
        self.offset = offset  # left padding of this row in a batch: its positions start at -offset
        self.seen: dict[int, int] = {}
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
        edits = self.plan.edits.get(layer)
        if not edits:
            return hidden
        mask = self.mask(layer, hidden.shape[-2], hidden.device)
        if mask is not None and not bool(mask.any()):
            return hidden
        return steer_math.masked(hidden, _apply_edits(edits, hidden), mask)


def _apply_edits(edits: Sequence[Edit], hidden: Tensor) -> Tensor:
    """The edits of one layer, in order. Pins of TopK features of one SAE share one encoder product:
    each later pin reads pre-activations moved by the earlier pins' edits (exact, since they are
    affine in the residual), instead of encoding again; fp32 residuals only, so rounding stays
    at float32 level."""
    out, pre, pre_sae = hidden, None, None
    for edit in edits:
        reader = edit.activation
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


class _RowsSteerState:
    """Per-row steering of one batched forward: row b gets only its own request's edits."""

    def __init__(self, rows: Sequence[_SteerState | None]):
        self.rows = list(rows)

    def apply(self, layer: int, hidden: Tensor) -> Tensor:
        out = hidden
        for b, row in enumerate(self.rows):
            if row is None or not row.plan.edits.get(layer):
                continue
            own = hidden[b : b + 1]
            edited = row.apply(layer, own)
            if edited is not own:
                if out is hidden:
                    out = hidden.clone()
                out[b : b + 1] = edited
        return out


class Capture:
    """Residuals recorded at some layers during a `capture_residual` block, float32 on CPU."""

    def __init__(self, layers: Iterable[int], stop_after: int | None):
        self.layers = sorted(set(layers))
        self.stop_after = stop_after
        self._chunks: dict[int, list[Tensor]] = {layer: [] for layer in self.layers}

    def record(self, layer: int, hidden: Tensor) -> None:
        if layer in self._chunks:
            self._chunks[layer].append(hidden.detach().float().cpu())

    def __getitem__(self, layer: int) -> Tensor:
        """All positions recorded at `layer`, concatenated along the sequence: (B, T, d)."""
        chunks = self._chunks[layer]
        if not chunks:
            raise KeyError(f"nothing was recorded at layer {layer}: did a forward pass run inside the block?")
        return torch.cat(chunks, dim=-2)


class StopForward(Exception):
    """Raised by the hook once the last captured layer has run, to skip the rest of the model."""


class _ThreadState(threading.local):
    steer: _SteerState | None = None
    capture: Capture | None = None


_state = _ThreadState()
_active_lock = threading.Lock()
_active_count = 0


def active_requests() -> int:
    """How many requests are generating right now, across all threads (a batch counts its rows)."""
    return _active_count


def _count(delta: int) -> None:
    global _active_count
    with _active_lock:
        _active_count += delta


class Dispatcher:
    """The permanent hooks of one model; see the module docstring."""

    def __init__(self, model: torch.nn.Module):
        self.layers = decoder_layers(model)
        self.handles = []
        try:
            for i, layer in enumerate(self.layers):
                self.handles.append(layer.register_forward_hook(self._make_hook(i)))
        except BaseException:
            self.remove()
            raise

    @staticmethod
    def _make_hook(index: int):
        def hook(module, args, output):
            steer, capture = _state.steer, _state.capture
            if steer is None and capture is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output  # (B, T, d)
            new = steer.apply(index, hidden) if steer is not None else hidden
            if capture is not None:
                capture.record(index, new)
                if capture.stop_after is not None and index >= capture.stop_after:
                    raise StopForward
            if new is hidden:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


_dispatchers: "weakref.WeakKeyDictionary[torch.nn.Module, Dispatcher]" = weakref.WeakKeyDictionary()
_attach_lock = threading.Lock()


def attach(model: torch.nn.Module) -> Dispatcher:
    """Install the dispatching hooks on `model` once (idempotent, thread-safe).

    Call it before serving concurrent requests: installing mutates the modules' hook tables.
    """
    with _attach_lock:
        dispatcher = _dispatchers.get(model)
        if dispatcher is None:
            dispatcher = _dispatchers[model] = Dispatcher(model)
        return dispatcher


def detach(model: torch.nn.Module) -> None:
    """Remove the dispatching hooks from `model` (nothing may be running on it)."""
    with _attach_lock:
        dispatcher = _dispatchers.pop(model, None)
        if dispatcher is not None:
            dispatcher.remove()


def is_steering_active() -> bool:
    """Whether the calling thread is inside a `steering()` block."""
    return _state.steer is not None


@contextmanager
def steering(
    model: torch.nn.Module,
    plan: SteeringPlan | None,
    prompt_ids: Tensor | None = None,
    special_ids: Iterable[int] | None = None,
) -> Iterator[None]:
    """Steer every forward pass this thread runs on `model` inside the block, and nothing else.

    `prompt_ids` (1, T) marks which positions are the prompt (for `generated_only`) and, with
    `special_ids`, which prompt tokens are special (for `steer_special_tokens=False`).
    """
    attach(model)
    if _state.steer is not None:
        raise RuntimeError("steering() blocks cannot nest on one thread; combine the edits into one plan")
    _state.steer = None if plan is None or plan.is_empty else _SteerState(plan, prompt_ids, special_ids)
    _count(+1)
    try:
        yield
    finally:
        _state.steer = None
        _count(-1)


@contextmanager
def steering_rows(
    model: torch.nn.Module,
    plans: Sequence[SteeringPlan | None],
    prompt_ids: Sequence[Tensor],
    offsets: Sequence[int],
    special_ids: Iterable[int] | None = None,
) -> Iterator[None]:
    """`steering()` for a batch of requests in one forward pass: row b is steered by `plans[b]`.

    `prompt_ids[b]` (1, T_b) is row b's own prompt without padding and `offsets[b]` its left
    padding, so positions, `generated_only` and special tokens mean the same as for a lone request.
    """
    attach(model)
    if _state.steer is not None:
        raise RuntimeError("steering() blocks cannot nest on one thread; combine the edits into one plan")
    special_ids = list(special_ids or ())
    rows = [None if plan is None or plan.is_empty else _SteerState(plan, ids, special_ids, offset)
            for plan, ids, offset in zip(plans, prompt_ids, offsets, strict=True)]
    _state.steer = _RowsSteerState(rows) if any(r is not None for r in rows) else None
    _count(+len(rows))
    try:
        yield
    finally:
        _state.steer = None
        _count(-len(rows))


@contextmanager
def capture_residual(model: torch.nn.Module, layers: int | Iterable[int], stop_early: bool = False) -> Iterator[Capture]:
    """Record the residual stream (decoder layer outputs) this thread produces at `layers`.

    With `stop_early`, the forward pass raises `StopForward` right after the deepest requested
    layer, which saves the cost of the remaining layers; catch it around the forward call.
    """
    attach(model)
    wanted = [layers] if isinstance(layers, int) else list(layers)
    n = len(decoder_layers(model))
    bad = [layer for layer in wanted if not 0 <= layer < n]
    if bad:
        raise ValueError(f"layer(s) {bad} out of range: this model has decoder layers 0..{n - 1}")
    if _state.capture is not None:
        raise RuntimeError("capture_residual() blocks cannot nest on one thread")
    capture = Capture(wanted, max(wanted) if stop_early else None)
    _state.capture = capture
    try:
        yield capture
    finally:
        _state.capture = None
