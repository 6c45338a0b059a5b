"""The watcher's side of "the dataset is built when the labeling is done" (``dataset.auto_build``).

Every ``check_every_s`` the daemon asks :func:`batchlabel.dataset.completion.build_if_complete` whether the project is
complete and changed since the last build; a build runs in a background thread so ingestion never waits for it, and
at most one build runs at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from batchlabel.config import Config

log = logging.getLogger(__name__)


class AutoBuilder:
    """Polls the completion rule and builds new dataset versions in the background.

    Args:
        config: the validated config (``dataset.auto_build`` decides when; ``dataset.out`` where).
        client: a connected Label Studio SDK client.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, config: Config, client: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        self.settings = config.dataset.auto_build
        from batchlabel.dataset.completion import CompletionRule

        self._rule = (CompletionRule(mode=self.settings.when, fraction=self.settings.fraction, tag=self.settings.tag)
                      if self.settings.when != "never" else None)
        self.enabled = self._rule is not None
        self._next_check = clock() + self.settings.check_every_s
        self._thread: threading.Thread | None = None
        self.built: list[Any] = []

    def poll(self) -> None:
        """Start a check-and-build if one is due and none is running. Cheap to call often."""
        if not self.enabled or self.clock() < self._next_check:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._next_check = self.clock() + self.settings.check_every_s
        self._thread = threading.Thread(target=self._build, name="batchlabel-autobuild", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        from batchlabel.dataset.completion import build_if_complete
        from batchlabel.dataset.ls_export import DatasetError
        from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

        if self._rule is None:
            return
        try:
            version = build_if_complete(self.config, rule=self._rule, client=self.client)
        except (DatasetError, LabelStudioError, LabelStudioUnavailableError, OSError) as error:
            log.warning("automatic dataset build failed: %s", error)
            return
        if version is not None:
            self.built.append(version)
            log.info("labeling complete: dataset built at %s (latest: %s)", version, version.parent / "latest")

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for a build in flight (at shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
