"""Locks that survive `fork`: a ZeroGPU worker is a fork of the process serving the page."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Callable


class ForkSafeLock:
    """A lock that a forked child gets fresh: one held by another thread at the fork would never be released there."""

    def __init__(self, factory: Callable[[], object] = threading.Lock):
        self._factory = factory
        self._lock = factory()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _renew(ref))

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)


def _renew(ref: weakref.ref) -> None:
    if (lock := ref()) is not None:
        lock._lock = lock._factory()
