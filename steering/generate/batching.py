"""Groups of requests run on one thread each; with a window, groups that arrive together share a batch.

Why batch: one decoding step of a model this size costs about the same for four rows as for one
(it is bound by reading the weights, on a CPU and on a GPU alike), so requests that arrive
together should share their steps. Groups submitted within `window_s` of the first one form a
batch of at most `max_batch` rows; the batch runs on its own thread until its last row ends, and
later groups form new batches beside it (a running batch takes no newcomers: `generate` keeps
one batch throughout). With `window_s = 0` every group runs at once on its own thread. A group
(a compared pair of answers) always stays in one batch.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Sequence

from steering.generate.decode import Request


class _Forming:
    def __init__(self) -> None:
        self.rows: list[Request] = []
        self.full = threading.Event()


class Batcher:
    """Hands groups of requests to `run` (see the module docstring); `batch_sizes` records the last 1000 batches."""

    def __init__(self, run: Callable[[Sequence[Request]], None], window_s: float = 0.0, max_batch: int = 1):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if not window_s >= 0:
            raise ValueError(f"window_s must be 0 or more seconds, got {window_s}")
        self.run, self.window_s, self.max_batch = run, window_s, max_batch
        self._lock = threading.Lock()
        self._forming: _Forming | None = None
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # bounded: a server runs for months

    @property
    def batching(self) -> bool:
        return self.window_s > 0 and self.max_batch > 1

    def submit(self, group: Sequence[Request]) -> None:
        """Start `group` now (no batching) or add it to the batch forming now."""
        group = list(group)
        if not self.batching:
            self._start(group)
            return
        with self._lock:
            forming = self._forming
            if forming is None or len(forming.rows) + len(group) > max(self.max_batch, len(group)):
                if forming is not None:
                    forming.full.set()
                forming = self._forming = _Forming()
                threading.Thread(target=self._launch, args=(forming,), name="steering-batch", daemon=True).start()
            forming.rows.extend(group)
            if len(forming.rows) >= self.max_batch:
                forming.full.set()

    def _start(self, rows: list[Request]) -> None:
        threading.Thread(target=self._run, args=(rows,), name="steering-generate", daemon=True).start()

    def _launch(self, forming: _Forming) -> None:
        forming.full.wait(self.window_s)
        with self._lock:
            if self._forming is forming:
                self._forming = None
            rows = list(forming.rows)
        self._run(rows)

    def _run(self, rows: list[Request]) -> None:
        self.batch_sizes.append(len(rows))
        for r in rows:
            r.batch, r.thread = rows, threading.current_thread()
        self.run(rows)
