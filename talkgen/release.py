"""Give memory a finished job freed back to the operating system.

glibc keeps freed heap pages mapped for reuse, so a long-lived worker's RSS creeps up job after job
(fragmentation from decoders, downloads, model calls). After each job, collect cycles and trim the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache


@cache
def _malloc_trim():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
        return None


def release_memory() -> None:
    """Collect garbage cycles and return free heap pages to the OS (glibc); a no-op elsewhere."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
