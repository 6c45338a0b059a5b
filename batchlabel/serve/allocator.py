"""The C allocator's policy for the long-running backend process: few glibc malloc arenas, freed pages returned.

glibc gives each thread that allocates while the others hold the heap an arena of its own (up to 8 per core), and
memory freed in an arena is reused by that arena only and seldom returned to the system. In ``batchlabel serve``
every click's decode and every store-miss encode runs on whichever of the request threadpool's threads took it, and
an encode frees hundreds of MB of temporaries: the RSS grew ~20 MB per store-miss encode under load (issue 12,
``benchmarks/faults_load.py``, benchmarks/RESULTS.md). Measured there: capping the arenas at 2 alone still grew
(+300 MB over 13 re-encodes in 60 s); with :func:`release_free_memory` after each encode as well the RSS stayed in
a band with no trend (15 re-encodes in 60 s).

``mallopt(M_ARENA_MAX)`` caps arenas created after the call, so :func:`limit_malloc_arenas` runs when the command
starts, before the model load and the threadpool make threads. It is the setting of the environment variable
``MALLOC_ARENA_MAX``, which glibc reads only at process start (too late to set from Python); a value set there by
the user wins. Not glibc (macOS, musl): nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
SERVE_ARENAS = 2


def limit_malloc_arenas(arenas: int = SERVE_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process at ``arenas``; True when applied (glibc, not set by the user)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        log.debug("MALLOC_ARENA_MAX=%s set by the environment: kept", os.environ["MALLOC_ARENA_MAX"])
        return False
    libc = _glibc()
    if libc is None:
        return False
    if libc.mallopt(M_ARENA_MAX, arenas) != 1:  # mallopt answers 1 on success
        log.warning("mallopt(M_ARENA_MAX, %d) refused: memory may grow with each store-miss encode", arenas)
        return False
    log.debug("malloc arenas capped at %d", arenas)
    return True


def release_free_memory() -> None:
    """Give the pages glibc holds free in every arena back to the system (``malloc_trim(0)``); nothing elsewhere.

    Called after each store-miss encode: its temporaries (hundreds of MB on a CPU) are freed by then, and without a
    trim glibc keeps most of them mapped (only the top of the main heap is trimmed on its own).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc, else None; looked up once (``find_library`` runs ``ldconfig``, and
    ``libc_ver`` reads the interpreter's binary)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
