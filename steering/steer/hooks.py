"""Request-scoped steering and residual capture through one permanent hook per decoder layer.

Why not register hooks per request: a forward hook on a shared model fires for every thread
using it, so per-request hooks leak one visitor's steering into another's chat, and a hook
left behind by an exception keeps steering later requests. Instead `SteeringHooks` registers one
dispatching hook per decoder layer, once, all-or-nothing; each hook reads the state of the
*thread running the forward pass* and does nothing when that thread has no active request.
`steering()`, `steering_rows()`, `replacing()` and `capture_residual()` set that per-thread
state and always clear it in `finally`, so scope ends with the `with` block whatever happens.

All state lives on the `SteeringHooks` object, which `attach` keeps on the model itself (one per
model) and `detach` removes with every hook.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from steering.model.layers import decoder_layers
from steering.steer.apply import RequestEdits, RowsEdits
from steering.steer.plan import SteeringPlan

_ATTRIBUTE = "_steering_hooks"


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
    steer: RequestEdits | RowsEdits | None = None
    replace: dict[int, Callable[[Tensor], Tensor]] | None = None
    capture: Capture | None = None


class SteeringHooks:
    """The permanent hooks of one model and the per-thread requests they serve; see the module docstring."""

    def __init__(self, model: torch.nn.Module):
        self.layers = decoder_layers(model)
        self._state = _ThreadState()
        self._count_lock = threading.Lock()
        self._active = 0
        self.owners: set[int] = set()
        self.handles = []
        try:
            for i, layer in enumerate(self.layers):
                self.handles.append(layer.register_forward_hook(self._make_hook(i)))
        except BaseException:
            self.remove()
            raise

    def __deepcopy__(self, memo) -> "SteeringHooks":
        """A deep-copied model keeps these hooks: `copy.deepcopy` shares the registered hook functions too."""
        return self

    def _make_hook(self, index: int):
        state = self._state

        def hook(module, args, output):
            steer, replace, capture = state.steer, state.replace, state.capture
            if steer is None and replace is None and capture is None:
                return None
            hidden = output[0] if isinstance(output, tuple) else output  # (B, T, d)
            new = steer.apply(index, hidden) if steer is not None else hidden
            if replace is not None and index in replace:
                new = replace[index](new)
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

    @property
    def active(self) -> int:
        """Requests generating right now on this model, across all threads (a batch counts its rows)."""
        return self._active

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._active += delta

    @contextmanager
    def _steer(self, state: RequestEdits | RowsEdits | None, count: int) -> Iterator[None]:
        if self._state.steer is not None:
            raise RuntimeError("steering() blocks cannot nest on one thread; combine the edits into one plan")
        self._state.steer = state
        self._count(+count)
        try:
            yield
        finally:
            self._state.steer = None
            self._count(-count)

    def steering(self, plan: SteeringPlan | None, prompt_ids: Tensor | None = None,
                 special_ids: Iterable[int] | None = None):
        """Steer every forward pass this thread runs inside the block, and nothing else.

        `prompt_ids` (1, T) marks which positions are the prompt (for `generated_only`) and, with
        `special_ids`, which prompt tokens are special (for `steer_special_tokens=False`).
        """
        return self._steer(None if plan is None or plan.is_empty else RequestEdits(plan, prompt_ids, special_ids), 1)

    def steering_rows(self, plans: Sequence[SteeringPlan | None], prompt_ids: Sequence[Tensor],
                      offsets: Sequence[int], special_ids: Iterable[int] | None = None):
        """`steering()` for a batch in one forward pass: row b is steered by `plans[b]`.

        `prompt_ids[b]` (1, T_b) is row b's own prompt without padding and `offsets[b]` its left
        padding, so positions, `generated_only` and special tokens mean the same as for a lone request.
        """
        special_ids = list(special_ids or ())
        rows = [None if plan is None or plan.is_empty else RequestEdits(plan, ids, special_ids, offset)
                for plan, ids, offset in zip(plans, prompt_ids, offsets, strict=True)]
        if len(rows) == 1:  # a lone request edits the whole (1, T, d) output, as steering() does
            state = rows[0]
        else:
            state = RowsEdits(rows) if any(r is not None for r in rows) else None
        return self._steer(state, len(rows))

    @contextmanager
    def replacing(self, layer: int, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
        """Inside the block, this thread's output of decoder layer `layer` becomes `fn(h)` (offline metrics)."""
        self._check_layers([layer])
        if self._state.replace is not None:
            raise RuntimeError("replacing() blocks cannot nest on one thread")
        self._state.replace = {layer: fn}
        try:
            yield
        finally:
            self._state.replace = None

    @contextmanager
    def capture_residual(self, layers: int | Iterable[int], stop_early: bool = False) -> Iterator[Capture]:
        """Record the residual stream (decoder layer outputs) this thread produces at `layers`.

        With `stop_early`, the forward pass raises `StopForward` right after the deepest requested
        layer, which saves the cost of the remaining layers; catch it around the forward call.
        """
        wanted = [layers] if isinstance(layers, int) else list(layers)
        self._check_layers(wanted)
        if self._state.capture is not None:
            raise RuntimeError("capture_residual() blocks cannot nest on one thread")
        capture = Capture(wanted, max(wanted) if stop_early else None)
        self._state.capture = capture
        try:
            yield capture
        finally:
            self._state.capture = None

    def _check_layers(self, wanted: Sequence[int]) -> None:
        bad = [layer for layer in wanted if not 0 <= layer < len(self.layers)]
        if bad:
            raise ValueError(f"layer(s) {bad} out of range: this model has decoder layers 0..{len(self.layers) - 1}")


_attach_lock = threading.Lock()


def attach(model: torch.nn.Module, owner: object | None = None) -> SteeringHooks:
    """The model's `SteeringHooks`, installed on first call (thread-safe).

    Call it before serving concurrent requests: installing mutates the modules' hook tables.
    An `owner` (an engine) holds the hooks until it calls `detach(model, owner)`; the hooks stay
    while any owner holds them, so closing one engine never unhooks another on the same model.
    """
    with _attach_lock:
        hooks = model.__dict__.get(_ATTRIBUTE)
        if hooks is None:
            hooks = SteeringHooks(model)
            model.__dict__[_ATTRIBUTE] = hooks
        if owner is not None:
            hooks.owners.add(id(owner))
        return hooks


def detach(model: torch.nn.Module, owner: object | None = None) -> None:
    """Release `owner`'s hold (or, without an owner, every hold) and remove the dispatching hooks from
    `model` once nobody holds them (nothing may be running on it then)."""
    with _attach_lock:
        hooks = model.__dict__.get(_ATTRIBUTE)
        if hooks is None:
            return
        if owner is None:
            hooks.owners.clear()
        else:
            hooks.owners.discard(id(owner))
        if not hooks.owners:
            model.__dict__.pop(_ATTRIBUTE)
            hooks.remove()


def steering(model: torch.nn.Module, plan: SteeringPlan | None, prompt_ids: Tensor | None = None,
             special_ids: Iterable[int] | None = None):
    """`attach(model).steering(...)`: steer this thread's forward passes on `model` inside the block."""
    return attach(model).steering(plan, prompt_ids, special_ids)


def capture_residual(model: torch.nn.Module, layers: int | Iterable[int], stop_early: bool = False):
    """`attach(model).capture_residual(...)`: record this thread's residuals at `layers`."""
    return attach(model).capture_residual(layers, stop_early)
