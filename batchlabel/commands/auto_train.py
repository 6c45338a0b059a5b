"""The watcher's side of "train when enough new reviews came in" (``train.every_n_annotations``).

Every ``check_every_s`` (the watcher's summary interval) a background thread reads the project's reviewed count
(:func:`batchlabel.sync.client.reviewed_task_count`: one ``GET /api/projects/{id}``) and, when it is
``every_n_annotations`` more than the newest model saw
(:class:`~batchlabel.annotate.training_trigger.ReviewedCountTrigger`), starts ``batchlabel train`` in the background
(:class:`~batchlabel.annotate.background_training.BackgroundTrainer`: a separate low-priority process, one per
project at a time, shared with ``serve`` through the project's lock file). Ingestion never waits for either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from batchlabel.annotate.background_training import BackgroundTrainer, child_environment, training_command
from batchlabel.annotate.trained_models import project_models_dir
from batchlabel.annotate.training_trigger import ReviewedCountTrigger
from batchlabel.config import Config

log = logging.getLogger(__name__)


class AutoTrainer:
    """Polls the reviewed count and starts background trainings.

    Args:
        config: the validated config (read from a file: the child runs ``batchlabel train`` on it).
        client: a connected Label Studio SDK client.
        project_id: the project's id.
        check_every_s: seconds between two reads of the reviewed count.
        trainer: the launcher (default: ``batchlabel train`` on ``config.source``).
        label_studio: ``(url, api_key)`` of the embedded Label Studio ``batchlabel up`` runs, handed to the child.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, config: Config, client: Any, project_id: int, *, check_every_s: float,
                 trainer: BackgroundTrainer | None = None, label_studio: tuple[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.client = client
        self.project_id = project_id
        self.check_every_s = check_every_s
        self.clock = clock
        self.trigger = ReviewedCountTrigger.for_config(config)
        self.enabled = self.trigger.enabled
        if self.enabled and trainer is None and (config.source is None or not config.source.is_file()):
            log.warning("train.every_n_annotations is set but the config was not read from a file: the watcher "
                        "cannot start `batchlabel train`")
            self.enabled = False
        self.trainer = trainer
        if self.enabled and self.trainer is None and config.source is not None:
            self.trainer = BackgroundTrainer(project_models_dir(config.models_dir, config.label_studio.project),
                                             training_command(config.source), env=child_environment(label_studio))
        self._next_check = clock()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Start a count check when one is due and none is running. Cheap to call often."""
        if not self.enabled or self.clock() < self._next_check:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._next_check = self.clock() + self.check_every_s
        self._thread = threading.Thread(target=self._check, name="batchlabel-autotrain", daemon=True)
        self._thread.start()

    def _check(self) -> None:
        from batchlabel.sync.client import (
            LabelStudioError,
            LabelStudioUnavailableError,
            RetryPolicy,
            reviewed_task_count,
        )

        try:
            reviewed = reviewed_task_count(self.client, self.project_id,
                                           policy=RetryPolicy(max_attempts=2, deadline_s=10.0))
        except (LabelStudioError, LabelStudioUnavailableError) as error:
            log.warning("reviewed count not read (the next check retries): %s", error)
            return
        if self.trigger.due(reviewed) and self.trainer is not None:
            self.trainer.request(f"{reviewed} tasks reviewed (watch)")

    def close(self) -> None:
        """At shutdown: wait for a count check in flight and stop a training this watcher started."""
        if self._thread is not None:
            self._thread.join(30.0)
        if self.trainer is not None:
            self.trainer.close()
