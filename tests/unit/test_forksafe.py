"""Locks and caches that a ZeroGPU worker (a fork of the page's process) inherits."""

import os
import threading

import pytest
import torch

from steering.forksafe import ForkSafeLock
from steering.sae import open_sae
from steering.sae.cache import SAECache


def _child_can_lock(lock, timeout: float = 5.0) -> bool:
    """Fork while another thread holds `lock`; True if the child can take it within `timeout` s."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        inner = getattr(lock, "_lock", lock)
        ok = inner.acquire(timeout=timeout)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    release.set()
    thread.join()
    return answer == b"1"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a process with threads: the point of the test
def test_a_fork_safe_lock_held_at_the_fork_is_free_in_the_child():
    # the control: a plain lock stays held in the child (its holder does not exist there, so waiting longer
    # than half a second could not change that)
    assert not _child_can_lock(threading.Lock(), timeout=0.5), "the control: a plain lock stays held in the child"
    assert _child_can_lock(ForkSafeLock())
    assert _child_can_lock(ForkSafeLock(threading.RLock))


def test_the_sae_cache_reads_widths_from_headers_and_loads_once(saes, tmp_path):
    opened = []

    def open_layer(layer):
        opened.append(layer)
        return open_sae(tmp_path / "saes" / f"layer_{layer}")

    cache = SAECache(open_layer)
    assert cache.width(1) == 40 and cache._saes == {}, "the width needs no weights"
    sae = cache.load(1)
    assert cache.load(1) is sae and opened == [1]
    torch.testing.assert_close(sae.W_dec, saes[1].W_dec)
    assert sae.meta["layer"] == 1
