"""The honest total ETA of a detector in the progress output of ``encode`` and ``run``.

SAM 3 takes ~40 s per image on a CPU, far more than the encode; a progress bar's rate-based ETA after a few images
whose proposals were stored (or encoded fast) is far off. This ETA is the seconds the detector took on the first
image it ran on, times the images still to go. It is an upper bound: an image whose proposals are stored already
takes no detector time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: A detector at least this slow per image gets its ETA line as a warning (else info).
SLOW_DETECTOR_S = 5.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``: a duration rounded for a person."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class DetectionEta:
    """The detector's total ETA for ``total`` images (``total`` may be set once known, e.g. after ``run``'s scan).

    Attributes:
        detector_id: the detector the ETA is about (named in the line).
        total: images in this pass.
    """

    detector_id: str
    total: int
    _announced: bool = False

    def update(self, done: int, timings: Sequence[float]) -> str | None:
        """The ETA text once ``done`` of ``total`` images are finished.

        Args:
            done: images finished so far (detected, read from stored proposals, or failed).
            timings: the detector's seconds per image so far in this process
                (:func:`batchlabel.annotate.detect.detector_timings`); the first is the measurement.

        Returns:
            e.g. ``detect ETA ~12 min (40.1 s/image on the first image x 18 image(s) left)``, or None before the
            detector ran on any image. The first text is also logged (a warning when the detector is slow).
        """
        if not timings:
            return None
        per_image = float(timings[0])
        left = max(self.total - done, 0)
        text = (f"detect ETA ~{format_duration(per_image * left)} "
                f"({per_image:.1f} s/image on the first image x {left} image(s) left)")
        if not self._announced:
            self._announced = True
            log.log(logging.WARNING if per_image >= SLOW_DETECTOR_S else logging.INFO, "%s: %s", self.detector_id,
                    text)
        return text
