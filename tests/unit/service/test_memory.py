"""`release_free_memory` runs glibc's malloc_trim where there is one (this machine's libc is glibc), and
gives back pages a freed allocation held."""

import ctypes
import os
import platform

from steering.service.memory import release_free_memory


def test_freed_pages_go_back_to_the_system():
    assert platform.libc_ver()[0] == "glibc"
    blocks = [ctypes.create_string_buffer(64 * 1024) for _ in range(2000)]  # 128 MiB in blocks under mmap's threshold
    del blocks[:-1]  # all freed but the last, which pins the top of the heap
    held = rss()
    assert release_free_memory() is True
    assert rss() < held - 64 * 2**20


def rss() -> int:
    """This process's resident memory in bytes (/proc/self/statm: pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
