"""Training on a Ray cluster: ``batchlabel train CONFIG --ray ADDRESS``.

:class:`ClusterTrainer` wraps a trainer (the :class:`batchlabel.learn.trainer.Trainer` interface: ``kind``,
``check_base``, ``train``) and runs its ``train`` as one Ray task::

    driver (train): reviewed tasks -> dataset in <cache.dir> -> ClusterTrainer.train -> publish the model, re-predict
    Ray task (one GPU when the cluster has one, else one CPU): inner.train(dataset, base, out_dir) on that node,
            writing the weights under out_dir (in <cache.dir>, which every node sees)

Everything else of ``train`` stays in the driver, as with ``encode --ray``/``run --ray``: reading the reviewed tasks
from Label Studio, the manifest, the atomic publish into ``<cache.dir>/models/<project>/`` and the re-prediction
pushed through the journal. Requirements as in ``docs/scale-out.md``: ``cache.dir`` (the dataset, the training's
output folder) and ``train.base`` are the same paths on every node, and every node has batchlabel with the
Ultralytics extra. The trainer's error (a :class:`~batchlabel.learn.trainer.TrainerError`) comes back from the task
as itself; a node lost mid-training makes Ray run the task again once (from the base weights: a training has no
partial result worth keeping).

Only the per-epoch progress stays on the node (in the trainer's own log under ``out_dir``); the driver logs where
the task ran and how long it took. ``ray`` is imported only here and in :mod:`batchlabel.ingest.ray_encode`, only
with ``--ray``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchlabel.ingest.ray_encode import _ray_initialized, connect

log = logging.getLogger(__name__)

#: A task lost with its node is run again this many times (system failures only; a trainer's error is final).
TASK_RETRIES = 1


def _train_on_node(inner: Any, dataset_yaml: Path, base: Path, out_dir: Path, options: dict[str, Any]
                   ) -> tuple[Any, str]:
    """The Ray task: ``inner.train`` on this node; returns its result and ``host:pid`` of the worker."""
    result = inner.train(dataset_yaml, base, out_dir, **options)
    return result, f"{socket.gethostname()}:{os.getpid()}"


class ClusterTrainer:
    """A trainer whose ``train`` runs ``inner.train`` as one task on the Ray cluster at ``address`` (``auto``,
    ``HOST:PORT``, ``ray://HOST:PORT``; None or ``local``: a Ray started in this process).

    After :meth:`train`: ``node`` is where it ran (``host:pid``), ``num_gpus`` the GPUs it was given (0 or 1).
    """

    def __init__(self, inner: Any, *, address: str | None) -> None:
        self.inner = inner
        self.kind: str = inner.kind
        self.address = address
        self.node: str | None = None
        self.num_gpus = 0

    def check_base(self, base: Path) -> None:
        """In the driver (``train.base`` is the same path on every node)."""
        self.inner.check_base(base)

    def train(self, dataset_yaml: Path, base: Path, out_dir: Path, *, epochs: int, imgsz: int, device: str,
              batch: int, on_epoch: Callable[[Any], None] | None = None) -> Any:
        """``inner.train`` with the same arguments on one cluster node; ``on_epoch`` is not called (the epochs run
        there). Raises what ``inner.train`` raises, or :class:`~batchlabel.ingest.ray_encode.RayUnavailableError`."""
        owned = not _ray_initialized()  # a Ray this call joins or starts is left again before returning
        ray = connect(self.address)
        try:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            self.num_gpus = 1 if gpus > 0 and device != "cpu" else 0
            node_device = "cuda:0" if self.num_gpus else "cpu"  # Ray shows the task only its one GPU, as device 0
            task = ray.remote(num_gpus=self.num_gpus, num_cpus=1, max_retries=TASK_RETRIES)(_train_on_node)
            log.info("training on the Ray cluster at %s: one task, %s", self.address or "local",
                     "one GPU" if self.num_gpus else "one CPU (the cluster has no GPU)" if not gpus else "on a CPU")
            started = time.perf_counter()
            options = {"epochs": epochs, "imgsz": imgsz, "device": node_device, "batch": batch}
            try:
                result, self.node = ray.get(task.remote(self.inner, Path(dataset_yaml), Path(base), Path(out_dir),
                                                        options))
            except ray.exceptions.RayTaskError as error:  # the trainer's own error, without Ray's wrapping
                cause = getattr(error, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
        finally:
            if owned:
                ray.shutdown()  # now, not at exit: Ray's parting messages must not follow the report on stdout
        log.info("trained on the Ray cluster (worker %s) in %.1f s", self.node, time.perf_counter() - started)
        return result
