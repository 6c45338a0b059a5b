"""``serve``'s side of background training: Label Studio's "Start training" and its annotation webhooks.

Label Studio 1.23 sends "Start training" (``POST /api/ml/{id}/train``, the Model settings' button) as
``POST /webhook {"action": "START_TRAINING", "project": {...}}`` when its feature flag
``ff_back_dev_1417_start_training_mlbackend_webhooks_250122_long`` is on (its bundled flags have it on), else as the
older ``POST /train`` with every annotated task. Both start ``batchlabel train`` in the background
(:class:`~batchlabel.annotate.background_training.BackgroundTrainer`) and are answered at once: Label Studio waits
for the answer, and a training takes minutes.

Annotation webhooks (``ANNOTATION_CREATED``, ``ANNOTATIONS_CREATED``, ``ANNOTATION_UPDATED``,
``ANNOTATIONS_DELETED``) carry the project with its counts; with ``train.every_n_annotations`` N > 0 a training
starts when ``project.num_tasks_with_annotations`` is N more than the newest model saw
(:class:`~batchlabel.annotate.training_trigger.ReviewedCountTrigger`). Other actions are accepted and ignored.

A webhook naming another project (by title) than the config's starts nothing (a warning says so): ``train CONFIG``
trains the config's project.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchlabel.annotate.background_training import BackgroundTrainer, child_environment, training_command
from batchlabel.annotate.trained_models import project_models_dir
from batchlabel.annotate.training_trigger import ReviewedCountTrigger
from batchlabel.config import Config

log = logging.getLogger(__name__)

START_TRAINING = "START_TRAINING"
ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED",
                                "ANNOTATIONS_DELETED"})
#: The answer's ``status`` when no training can be started from this process (the config was not read from a file).
UNAVAILABLE = "unavailable"


@dataclass
class ServeTraining:
    """What ``/webhook`` and ``/train`` start.

    Attributes:
        project_title: the config's ``label_studio.project``.
        trainer: the project's launcher; None when this process cannot start ``train`` (``unavailable`` says why).
        trigger: the reviewed-count trigger (off when ``train.every_n_annotations`` is 0).
    """

    project_title: str
    trainer: BackgroundTrainer | None
    trigger: ReviewedCountTrigger
    unavailable: str = ""

    def start(self, reason: str, project: Any = None) -> dict[str, str]:
        """Start (or queue) a training for ``reason``; the JSON answer ``{"status": started|queued|coalesced|...}``."""
        other = self._other_project(project)
        if other is not None:
            log.warning("%s for project %r ignored: this backend trains %r", reason, other, self.project_title)
            return {"status": "ignored", "reason": f"this backend trains project {self.project_title!r}"}
        if self.trainer is None:
            log.warning("%s: no training started: %s", reason, self.unavailable)
            return {"status": UNAVAILABLE, "reason": self.unavailable}
        return {"status": self.trainer.request(reason)}

    def on_annotations(self, action: str, project: Any) -> dict[str, str]:
        """An annotation webhook: start a training when the project's reviewed count calls for one."""
        if not self.trigger.enabled or self._other_project(project) is not None:
            return {"status": "ok"}
        reviewed = project.get("num_tasks_with_annotations") if isinstance(project, Mapping) else None
        if not isinstance(reviewed, int) or isinstance(reviewed, bool):
            log.debug("webhook %s without project.num_tasks_with_annotations: not counted", action)
            return {"status": "ok"}
        if not self.trigger.due(reviewed):
            return {"status": "ok"}
        return self.start(f"{reviewed} tasks reviewed ({action})")

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.close()

    def _other_project(self, project: Any) -> str | None:
        """The title of ``project`` (a webhook's project object) when it is not the config's project."""
        title = project.get("title") if isinstance(project, Mapping) else None
        return title if isinstance(title, str) and title != self.project_title else None


def build_serve_training(config: Config, *, label_studio: tuple[str, str] | None = None) -> ServeTraining:
    """The launcher and trigger for ``config``'s project (nothing starts until a request comes); ``label_studio``:
    ``(url, api_key)`` of the embedded Label Studio ``batchlabel up`` runs, handed to the child."""
    models_dir = project_models_dir(config.models_dir, config.label_studio.project)
    trigger = ReviewedCountTrigger.for_config(config)
    if config.source is None or not config.source.is_file():
        return ServeTraining(config.label_studio.project, None, trigger,
                             "the config was not read from a file, so `batchlabel train CONFIG` cannot be started")
    trainer = BackgroundTrainer(models_dir, training_command(config.source), env=child_environment(label_studio))
    return ServeTraining(config.label_studio.project, trainer, trigger)
