"""When reviewed work calls for a new model: ``train.every_n_annotations`` more reviewed tasks than the newest
model was trained on (and than the last training this process started for).

``serve`` feeds it the count from each annotation webhook's payload (``project.num_tasks_with_annotations``: Label
Studio serialises the project with its counts into every webhook, so counting costs nothing), ``watch`` from the
project's counts it reads periodically (one ``GET /api/projects/{id}``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchlabel.config import Config

log = logging.getLogger(__name__)


class ReviewedCountTrigger:
    """Decides when ``every_n`` more tasks have been reviewed since the newest model.

    Args:
        every_n: reviewed tasks per training; 0 switches the trigger off.
        trained_on: the number of reviewed tasks the project's newest model was trained on (0 without a model);
            called on each :meth:`due`, so a model trained meanwhile (by ``batchlabel train`` or another process)
            moves the baseline.
        minimum: no training below this many reviewed tasks (``train`` refuses them anyway).
        training_running: True while a training of the project runs in any process (its status file): not due then,
            so ``serve`` and ``up``'s watcher, each with a trigger, do not train the same reviews twice.
    """

    def __init__(self, every_n: int, trained_on: Callable[[], int], *, minimum: int = 0,
                 training_running: Callable[[], bool] = lambda: False) -> None:
        if every_n < 0:
            raise ValueError(f"every_n must be 0 (off) or positive, got {every_n}")
        self.every_n = every_n
        self.trained_on = trained_on
        self.minimum = minimum
        self.training_running = training_running
        self._started_at = 0  # the reviewed count when this process last asked for a training
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: Config) -> ReviewedCountTrigger:
        """``train.every_n_annotations`` and ``train.min_reviewed`` of ``config``, the baseline from its project's
        newest model (:func:`batchlabel.annotate.trained_models.newest_model`)."""
        from batchlabel.annotate.trained_models import newest_model

        def trained_on() -> int:
            newest = newest_model(config.models_dir, config.label_studio.project)
            return newest.reviewed_tasks if newest is not None else 0

        def training_running() -> bool:
            from batchlabel.annotate.background_training import training_in_progress
            from batchlabel.annotate.trained_models import project_models_dir

            folder = project_models_dir(config.models_dir, config.label_studio.project)
            return training_in_progress(folder) is not None

        return cls(config.train.every_n_annotations, trained_on, minimum=config.train.min_reviewed,
                   training_running=training_running)

    @property
    def enabled(self) -> bool:
        return self.every_n > 0

    def due(self, reviewed: int) -> bool:
        """True (once) when ``reviewed`` tasks call for a training; the caller then starts one."""
        if not self.enabled or reviewed < self.minimum:
            return False
        if self.training_running():  # due again (if still) once it has published its model
            return False
        with self._lock:
            baseline = max(self.trained_on(), self._started_at)
            if reviewed - baseline < self.every_n:
                return False
            self._started_at = reviewed
        log.info("%d task(s) reviewed, %d more than the newest model saw (every_n_annotations %d): training due",
                 reviewed, reviewed - baseline, self.every_n)
        return True
