"""Which failures can pass, and when a failed file is tried again.

A failure is **transient** when its cause lies outside the file and can go away by itself: a full disk, memory
exhausted, Label Studio or the network down, too many open files. Such a file is retried by a later pass (``run``,
or ``watch``'s periodic retry) with exponential back-off: :func:`retry_delay_s` after its ``attempts``-th failure.
Any other failure belongs to the file (corrupt, too large, refused by Label Studio) and is **permanent**: retried
only when the file's content changes, or on demand with ``batchlabel run --retry-failed``.

The journal stores only the one-line reason, so the reason text decides (the errno messages of the OS and the
messages batchlabel writes for an unreachable Label Studio).
"""

from __future__ import annotations

#: Substrings (lowercase) of reasons whose cause can pass.
TRANSIENT_MARKERS = (
    "no space left on device",
    "disk quota exceeded",
    "database or disk is full",
    "cannot allocate memory",
    "out of memory",
    "memoryerror",
    "too many open files",
    "label studio unavailable",
    "connection refused",
    "connection reset",
    "timed out",
    "temporarily unavailable",
    "network is unreachable",
)
RETRY_BASE_S = 2.0
RETRY_MAX_S = 3600.0


def is_transient(reason: str | None) -> bool:
    """True when a failure with this one-line ``reason`` can pass without the file changing."""
    text = (reason or "").lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)


def retry_delay_s(attempts: int) -> float:
    """Seconds to wait after a file's ``attempts``-th transient failure: 2, 4, 8 ... up to an hour."""
    return min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(0, min(attempts - 1, 20)))


def retry_at(*, attempts: int, failed_at: float) -> float:
    """When (epoch seconds) a file that failed transiently ``attempts`` times, last at ``failed_at``, is retried."""
    return failed_at + retry_delay_s(attempts)


def retry_due(*, transient: bool, attempts: int, failed_at: float, now: float) -> bool:
    """True when a failed file should be tried again now (never for a permanent failure)."""
    return transient and now >= retry_at(attempts=attempts, failed_at=failed_at)
