"""The SAEs of a model's layers, each opened once: its width from the header, its weights on first use."""

from __future__ import annotations

import threading
from typing import Callable

from steering.forksafe import ForkSafeLock
from steering.sae.core import SAE
from steering.sae.registry import SAEHandle


class SAECache:
    """Per-layer SAEs from `open_layer(layer) -> SAEHandle`; safe to share between threads."""

    def __init__(self, open_layer: Callable[[int], SAEHandle]):
        self._open = open_layer
        self._handles: dict[int, SAEHandle] = {}
        self._saes: dict[int, SAE] = {}
        self._lock = ForkSafeLock(threading.RLock)

    def handle(self, layer: int) -> SAEHandle:
        """The layer's SAE as a header (widths, rules) with features read on demand."""
        with self._lock:
            if layer not in self._handles:
                self._handles[layer] = self._open(layer)
            return self._handles[layer]

    def width(self, layer: int) -> int:
        """The number of features, from the header: no weights read, no tensor work."""
        return self.handle(layer).d_sae

    def load(self, layer: int) -> SAE:
        """The whole SAE, read once, on the CPU."""
        with self._lock:
            if layer not in self._saes:
                sae = self.handle(layer).load()
                sae.meta.setdefault("layer", layer)
                self._saes[layer] = sae
            return self._saes[layer]
