"""Give freed heap memory back to the operating system after each answer and inspector read (glibc only).

Why: glibc's malloc keeps memory freed by a thread in that thread's arena; a server whose answers and reads run on
a pool of worker threads with tensors of every size keeps those pages, and its resident memory creeps up chat
after chat although nothing is leaked (benchmarks/soak.py, docs/reliability.md#memory). `malloc_trim(0)` hands the
free pages of every arena back; it takes well under a millisecond here and does nothing where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_lock = threading.Lock()
_trim = None


def _load():
    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to trim
            _trim = False
    return _trim


def release_free_memory() -> bool:
    """`malloc_trim(0)`: True where it ran (glibc), False elsewhere."""
    trim = _load()
    if not trim:
        return False
    with _lock:
        trim(0)
    return True
