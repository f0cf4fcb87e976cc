"""``distilbert.common.memory.keep_freed_memory``: glibc keeps freed memory, so a large block freed and
allocated again comes back without page faults (each check in its own process: the setting is
process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from distilbert.common import memory

# Allocates a 64 MiB block, writes it, frees it, and does it again; prints the page faults of the second
# round. With glibc's defaults the block is a fresh mmap each time (16,384 faults of 4 KiB pages).
PROBE = """
import ctypes, resource, sys
from distilbert.common.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20
def round_trip():
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(memory._glibc_mallopt() is None, reason="glibc's malloc only (Linux)")


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, int(faults)


def _huge_pages_always() -> bool:
    """Whether the kernel backs every fresh mapping with transparent huge pages (then a fresh 64 MiB
    block takes a few dozen faults, not thousands)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@glibc
def test_freed_memory_is_reused_without_page_faults():
    applied, kept = _faults("keep")
    _, default = _faults("default")
    assert applied == "True"
    if not _huge_pages_always():
        assert default > 8000, f"glibc's default serves the block from fresh pages: {default} faults, not > 8000"
    assert kept < min(1000, default), f"{kept} page faults for a block of a size just freed ({default} by default)"


def test_elsewhere_nothing_changes(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory._glibc_mallopt() is None
    assert memory.keep_freed_memory() is False
