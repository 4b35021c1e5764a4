"""Typical residual norms per layer: what makes a strength mean something on that layer."""

from __future__ import annotations

from typing import Mapping, Sequence

from steering.forksafe import ForkSafeLock
from steering.inspection.capture import typical_norm


class TypicalNorms:
    """Each layer's `capture.typical_norm`, measured once (a read through the backend) or handed in from elsewhere."""

    def __init__(self, backend):
        self.backend = backend
        self._norms: dict[int, float] = {}
        self._lock = ForkSafeLock()

    def measure(self, layers: Sequence[int]) -> dict[int, float]:
        """The norm of each layer; the ones not yet known cost a forward each."""
        with self._lock:
            for layer in dict.fromkeys(layers):
                if layer not in self._norms:
                    self._norms[layer] = typical_norm(self.backend, layer)
            return {layer: self._norms[layer] for layer in layers}

    @property
    def known(self) -> dict[int, float]:
        """The norms measured so far (no tensor work)."""
        return dict(self._norms)

    def remember(self, norms: Mapping[int, float]) -> None:
        """Keep norms measured elsewhere: in a ZeroGPU worker, whose copy of the engine ends with it."""
        with self._lock:
            self._norms.update({int(layer): float(v) for layer, v in norms.items()})
