"""Large buffers straight from the OS and back, so upload memory does not stay behind in the heap.

glibc serves an allocation above its mmap threshold with a mapping of its own, returned to the
OS on free. The threshold starts at 128 KiB but rises to the size of each large block freed, up
to 32 MiB: after the first 8 MiB part buffer is freed, later ones come from the heap, where
blocks of other sizes allocated between them fragment it and keep it from shrinking. Fixing the
threshold keeps every part buffer a mapping of its own (measured: 8 concurrent 64 MiB uploads
grew RSS by 70 MiB instead of 78). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


def map_large_buffers(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold; whether it took effect."""
    try:
        # The symbols already loaded into the process: libc's among them, with no library search
        # (`ctypes.util.find_library` runs ldconfig in a subprocess).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    if not applied:
        logger.warning("could not set the allocator's mmap threshold")
    return applied
