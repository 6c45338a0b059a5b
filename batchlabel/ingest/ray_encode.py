"""Encoding on a Ray cluster: ``batchlabel encode --ray`` and the encode and predict stages of ``batchlabel run --ray``.

The driver (this process) makes the work list the way the local commands do (discovery's scan, the journal), hands
it to Ray Data as a dataset of relative paths, and an actor pool encodes it::

    driver: scan + journal -> ray.data.from_items(rel paths) -> map_batches(EncodeActor, concurrency=N)
            -> rows stream back (progress bar, journal, per-file failures; run: predictions into a PredictionSpool)
    actor (one per GPU with num_gpus=1, else one CPU each): load_model once; BatchEncoder.encode_files(batch)
            reading the files and writing into the embedding store; for run in modes everything/detect also
            annotate.preannotate on each embedding (detect: the detector's proposals stored in
            <cache.dir>/proposals), the prediction's JSON going back in the row

``run --ray`` then runs the local pipeline, which finds every embedding stored and takes each file's prediction from
the spool (made by an actor for the same sha256 and model_version) instead of decoding again; the Label Studio push,
reconciliation and journal stay in the driver as in a local run. Modes ``points`` and ``boxes`` with
``boxes_from: tasks`` predict in the driver: their prompts come from the Label Studio tasks, which only the driver
reads (:func:`predicts_on_cluster`).

Requirements: ``storage.root`` and ``cache.dir`` (the embedding store) are the same path on every node (a shared
filesystem), and every node has batchlabel installed with the same model weights available. The store's ``put``
is atomic per entry (temp file + ``os.replace``, the ``.json`` last) and content-addressed, so several actors and
nodes write into it without locks, and a batch Ray retries after an actor or node was lost finds the images the lost
actor had already stored (``cached``) and encodes only the rest.

Ray Data restarts lost actors and retries their batches (its defaults ``max_restarts=-1``, ``max_task_retries=-1``);
a re-run does only what is missing because the store is consulted before every encode.

``ray`` is an optional extra (``pip install batchlabel[ray]``) imported only here, only with ``--ray``.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchlabel.config import Config

log = logging.getLogger(__name__)

#: Object store of a Ray that ``--ray`` with no address starts in this process (rows are small: paths, hashes).
LOCAL_OBJECT_STORE_BYTES = 256 * (1 << 20)
LOCAL_ADDRESS = "local"
#: Seconds a cluster's head port gets to accept one TCP connection before ``ray.init`` is even tried.
RAY_PROBE_TIMEOUT_S = 5.0


class RayUnavailableError(RuntimeError):
    """``--ray`` cannot be used as asked: the ``ray`` package is not installed, the cluster cannot be reached, or
    ``--ray-actors`` is not a positive count (a usage error: exit 2)."""


@dataclass(frozen=True)
class ClusterResult:
    """One file's outcome on the cluster: ``rel_path`` (POSIX, under ``storage.root``), ``sha256`` of its bytes
    (None when unreadable), ``cached`` (the store had it), ``error`` (one line, None on success), ``encode_s`` (its
    share of the actor's encoder time), ``node`` (host name, Ray node id prefix and process id of the actor that did
    it), ``model_id`` (the actor's model). When the actor predicted (``run --ray``, modes everything/detect):
    ``prediction_json`` (the Label Studio prediction as the actor's JSON text, ``"null"`` when nothing passed the
    thresholds; parsed only where the pipeline takes it), ``predicted`` True, ``predict_error`` (one line, None on
    success) and ``model_version`` of the prediction."""

    rel_path: str
    sha256: str | None
    cached: bool
    error: str | None
    encode_s: float
    node: str
    model_id: str
    predicted: bool = False
    prediction_json: str = ""
    predict_error: str | None = None
    model_version: str = ""


@dataclass
class ClusterSummary:
    """What a cluster encode did: counts per outcome, failures, which actors did the work."""

    images: int = 0
    encoded: int = 0
    cached: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    actors: int = 0
    num_gpus_per_actor: float = 0.0
    by_actor: Counter[str] = field(default_factory=Counter)
    predictions_by_actor: Counter[str] = field(default_factory=Counter)
    model_ids: set[str] = field(default_factory=set)
    encode_s: float = 0.0
    wall_s: float = 0.0

    def add(self, result: ClusterResult) -> None:
        self.images += 1
        self.by_actor[result.node] += 1
        self.model_ids.add(result.model_id)
        self.encode_s += result.encode_s
        if result.predicted and result.predict_error is None:
            self.predictions_by_actor[result.node] += 1
        if result.error is not None:
            self.failures.append({"path": result.rel_path, "reason": result.error})
        elif result.cached:
            self.cached += 1
        else:
            self.encoded += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images, "encoded": self.encoded, "cached": self.cached, "failed": len(self.failures),
            "failures": self.failures, "actors": self.actors, "num_gpus_per_actor": self.num_gpus_per_actor,
            "images_by_actor": dict(sorted(self.by_actor.items())),
            "predicted": sum(self.predictions_by_actor.values()),
            "predictions_by_actor": dict(sorted(self.predictions_by_actor.items())),
            "encode_s": round(self.encode_s, 3), "wall_s": round(self.wall_s, 3),
        }


class EncodeActor:
    """Ray Data's callable class: loads the model once (``__init__``), then maps batches of relative paths to
    outcome rows, encoding through the shared :class:`~batchlabel.infer.store.EmbeddingStore` and, with
    ``predict``, pre-annotating each embedding with :func:`batchlabel.annotate.preannotate.preannotate`.

    Batch in: ``{"rel_path": (B,) str}``. Batch out: ``{"rel_path", "sha256" ("" when unreadable), "cached" (bool),
    "error" ("" on success), "encode_s" (float), "prediction" (the prediction's JSON, ``null`` when there is
    nothing to predict, "" when not predicted), "predict_error" ("" on success), "node" (str), "model_id" (str),
    "model_version" (str)}``, each ``(B,)``.
    """

    def __init__(self, config: Config, device: str, predict: bool = False) -> None:
        from batchlabel.infer.engine import build_engine

        self.config = config
        self.root = config.storage.root
        engine = build_engine(config.model.model_copy(update={"device": device}), config.cache,
                              decoder="batch" if predict else "none")
        self.encoder, self.decoder = engine.encoder, engine.decoder
        self.model_version = ""
        if predict:
            from batchlabel.annotate.preannotate import model_version_for

            self.model_version = model_version_for(config, engine.model_id)  # detect: loads the detector once
        import os

        import ray

        self.node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}/pid{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rel_paths = [str(rel) for rel in batch["rel_path"]]
        by_path = {str(self.root / rel): rel for rel in rel_paths}
        keys = ("rel_path", "sha256", "cached", "error", "encode_s", "prediction", "predict_error")
        rows: dict[str, list[Any]] = {key: [] for key in keys}
        # gathered: Ray hands over a whole batch (one block), so the encoder adds no max_wait_ms of its own
        for result in self.encoder.encode_files([self.root / rel for rel in rel_paths], gathered=True):
            rel = by_path[str(result.path)]
            rows["rel_path"].append(rel)
            rows["sha256"].append(result.sha256 or "")
            rows["cached"].append(bool(result.cached))
            rows["error"].append(result.error or "")
            rows["encode_s"].append(float(result.timings.encode_s))
            prediction, predict_error = "", ""
            if self.model_version and result.error is None and result.embedding is not None:
                prediction, predict_error = self._predict(rel, result.embedding)
            rows["prediction"].append(prediction)
            rows["predict_error"].append(predict_error)
        out = {key: np.asarray(values) for key, values in rows.items()}
        out["node"] = np.asarray([self.node] * len(rel_paths))
        out["model_id"] = np.asarray([self.encoder.model_id] * len(rel_paths))
        out["model_version"] = np.asarray([self.model_version] * len(rel_paths))
        return out

    def _predict(self, rel_path: str, embedding: Any) -> tuple[str, str]:
        """(the prediction's JSON, "") or ("", the reason it failed): one file's failure never fails the batch."""
        from batchlabel.annotate.preannotate import preannotate
        from batchlabel.sync.client import image_url

        try:
            prediction = preannotate(self.config, self.decoder, embedding, {"data": {"image": image_url(rel_path)}},
                                     model_version=self.model_version)
        except Exception as error:  # journaled by the driver as this file's predict failure, as a local run does
            log.warning("%s: predict failed on the cluster: %s", rel_path, error)
            reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            return "", reason
        return json.dumps(prediction), ""


def connect(address: str | None) -> Any:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT`` of a head, ``ray://HOST:PORT``), or start a small
    local Ray in this process for ``None``/``local``. Returns the ``ray`` module.

    Raises:
        RayUnavailableError: ``ray`` is not installed or the cluster cannot be joined.
    """
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "--ray needs the optional Ray extra: pip install 'batchlabel[ray]' (ray[data])"
        ) from None
    if ray.is_initialized():
        return ray
    if address not in (None, LOCAL_ADDRESS):
        _probe_head(address)  # seconds, where ray.init would retry for minutes
    try:
        # log_to_driver off: actors' and raylets' lines would land on this process's stdout (the JSON report);
        # they stay in the cluster's session logs, and a failing actor still raises here.
        if address in (None, LOCAL_ADDRESS):
            ray.init(object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayUnavailableError(f"cannot join the Ray cluster at {address}: {error}") from None
    return ray


def _head_host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` / ``ray://HOST:PORT`` -> (host, port); None for ``auto`` or anything else Ray resolves itself."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    return (host, int(port)) if host and port.isdigit() and 0 < int(port) < 65536 else None


def _probe_head(address: str, *, timeout_s: float = RAY_PROBE_TIMEOUT_S) -> None:
    """One TCP connection to the head's port before ``ray.init``: nothing listening is a clear error within
    ``timeout_s`` (``ray.init`` itself retries the GCS for ~165 s without a word).

    Raises:
        RayUnavailableError: naming the address and the socket error.
    """
    target = _head_host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise RayUnavailableError(
            f"cannot join the Ray cluster at {address}: nothing answers on {target[0]}:{target[1]} ({reason}; "
            f"{timeout_s:g} s probe); start the head there (`ray start --head --port {target[1]}`) or fix --ray"
        ) from None


def actor_layout(ray: Any, config: Config, actors: int | None) -> tuple[int, float, str]:
    """(actor count, GPUs per actor, model device): one actor per GPU with ``num_gpus=1`` when the cluster has GPUs
    and ``model.device`` allows CUDA, else one CPU actor per cluster CPU; ``actors`` overrides the count."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus > 0 and config.model.device != "cpu":
        return (actors or max(1, gpus)), 1.0, "cuda"
    return (actors or max(1, int(resources.get("CPU", 1)))), 0.0, "cpu"


def encode_on_cluster(
    config: Config, rel_paths: Sequence[str], *, address: str | None, actors: int | None = None,
    on_result: Callable[[ClusterResult], None] | None = None, predict: bool = False,
) -> ClusterSummary:
    """Encode ``rel_paths`` (POSIX, under ``storage.root``) into the store on the Ray cluster at ``address``; with
    ``predict`` the actors also pre-annotate each image (for configs :func:`predicts_on_cluster` accepts).

    Every path yields one :class:`ClusterResult` (passed to ``on_result`` as it streams back, in completion order).
    Raises :class:`RayUnavailableError` when Ray is missing, the cluster cannot be joined or ``actors`` < 1.
    """
    if actors is not None and actors < 1:
        raise RayUnavailableError(f"--ray-actors must be at least 1, got {actors}")
    summary = ClusterSummary()
    started = time.perf_counter()
    if not rel_paths:
        return summary
    owned = not _ray_initialized()  # a Ray this call joins or starts is left again before returning
    ray = connect(address)
    try:
        _run_on_cluster(ray, config, rel_paths, actors, summary, on_result, predict)
    finally:
        if owned:
            ray.shutdown()  # now, not at exit: Ray's parting messages must not follow the report on stdout
    summary.wall_s = time.perf_counter() - started
    return summary


def _ray_initialized() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def _run_on_cluster(ray: Any, config: Config, rel_paths: Sequence[str], actors: int | None, summary: ClusterSummary,
                    on_result: Callable[[ClusterResult], None] | None, predict: bool) -> None:
    count, num_gpus, device = actor_layout(ray, config, actors)
    summary.actors, summary.num_gpus_per_actor = count, num_gpus
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # one bar, the driver's
    context.execution_options.preserve_order = False
    log.info("encoding %d image(s) on the Ray cluster with %d actor(s) (%s GPU each)", len(rel_paths), count, num_gpus)
    batch_size = max(1, config.model.batch_size)
    # One block per batch (batch_size=None below: a block is a batch). With a batch_size Ray Data would bundle small
    # blocks up to it and hand a few large tasks to the first actor ready, leaving the others idle.
    dataset = ray.data.from_items([{"rel_path": rel} for rel in rel_paths],
                                  override_num_blocks=math.ceil(len(rel_paths) / batch_size))
    outcomes = dataset.map_batches(
        EncodeActor, fn_constructor_kwargs={"config": config, "device": device, "predict": predict},
        compute=ray.data.ActorPoolStrategy(size=count, max_tasks_in_flight_per_actor=1), batch_size=None,
        num_gpus=num_gpus, num_cpus=0 if num_gpus else 1, batch_format="numpy",
    )
    for row in outcomes.iter_rows():
        result = ClusterResult(
            rel_path=str(row["rel_path"]), sha256=str(row["sha256"]) or None, cached=bool(row["cached"]),
            error=str(row["error"]) or None, encode_s=float(row["encode_s"]), node=str(row["node"]),
            model_id=str(row["model_id"]), predicted=bool(str(row["prediction"]) or str(row["predict_error"])),
            prediction_json=str(row["prediction"]),
            predict_error=str(row["predict_error"]) or None, model_version=str(row["model_version"]),
        )
        summary.add(result)
        if on_result is not None:
            on_result(result)


def pending_rel_paths(config: Config) -> Iterator[str]:
    """The files ``run`` would work on: discovery's selection under ``storage.root`` minus those the journal has as
    finished (:data:`~batchlabel.ingest.journal.FINISHED_STAGES`) with the same size and mtime (unchanged since),
    except failures whose retry is due (:meth:`~batchlabel.ingest.journal.Journal.retry_due`), which the pipeline
    tries again. Size and mtime stand in for the hash, which the pipeline's intake computes when it reads the file."""
    from batchlabel.ingest.discovery import PathFilter, scan
    from batchlabel.ingest.journal import FINISHED_STAGES, Journal

    root = config.storage.root
    with Journal(config.journal_path) as journal:
        finished = {record.rel_path: record for record in journal.records(FINISHED_STAGES)
                    if not journal.retry_due(record)}
        for path in scan(root, PathFilter(config.storage.include, config.storage.exclude)):
            rel = path.relative_to(root).as_posix()
            record = finished.get(rel)
            if record is not None:
                stat = path.stat()
                if record.size == stat.st_size and record.mtime_ns == stat.st_mtime_ns:
                    continue
            yield rel


def predicts_on_cluster(config: Config) -> bool:
    """Whether ``run --ray``'s actors make the predictions: modes ``everything`` and ``detect``, and ``boxes`` from
    COCO/sidecar files only; not ``none`` (nothing to make) nor prompts read from Label Studio tasks (``points``,
    ``boxes_from: tasks``), which only the driver has."""
    pre = config.preannotate
    return pre.mode in ("everything", "detect") or (pre.mode == "boxes" and "tasks" not in pre.boxes_from)


def prefetch_for_run(
    config: Config, rel_paths: Sequence[str], *, address: str | None, actors: int | None = None,
    on_result: Callable[[ClusterResult], None] | None = None,
) -> tuple[ClusterSummary, PredictionSpool | None]:
    """``run --ray``: encode the pending files (``rel_paths``: :func:`pending_rel_paths`) on the cluster into the
    store first (and predict them there when :func:`predicts_on_cluster`), so the local pipeline that follows (Label
    Studio push, journal) finds every embedding stored and takes each prediction from the returned spool (close it
    when the run is over). Failures are left to the pipeline, which meets them again (or takes the actor's predict
    failure) and journals them as a local run does. ``address``: the cluster's (None: a local one); ``on_result``:
    called per file (progress). The spool is None when the actors predict nothing (:func:`predicts_on_cluster`)."""
    if not predicts_on_cluster(config):
        return encode_on_cluster(config, rel_paths, address=address, actors=actors, on_result=on_result), None
    spool = PredictionSpool()

    def keep(result: ClusterResult) -> None:
        if result.predicted and result.sha256 is not None:
            spool.put(result.rel_path, result)
        if on_result is not None:
            on_result(result)

    try:
        summary = encode_on_cluster(config, rel_paths, address=address, actors=actors, on_result=keep, predict=True)
    except BaseException:
        spool.close()
        raise
    return summary, spool


@dataclass(frozen=True)
class ClusterPrediction:
    """An actor's prediction for one file: made from the bytes with ``sha256`` for ``model_version``; ``prediction``
    None when there was nothing to predict; ``error`` (one line) when predicting failed."""

    sha256: str
    model_version: str
    prediction: dict | None
    error: str | None


class PredictionSpool:
    """The actors' predictions of one ``run --ray``, by relative path, in a temporary SQLite file (the driver's
    memory stays flat however many files the run has). Thread-safe: written by the driver's main thread, read by
    the pipeline's encode thread. :meth:`close` deletes it."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="batchlabel-ray-predictions-")
        self._db = sqlite3.connect(f"{self._folder.name}/predictions.sqlite3", check_same_thread=False)
        self._db.execute("CREATE TABLE predictions (rel_path TEXT PRIMARY KEY, sha256 TEXT, model_version TEXT,"
                         " prediction TEXT, error TEXT)")
        self._lock = threading.Lock()

    def put(self, rel_path: str, result: ClusterResult) -> None:
        """Keep the actor's prediction for ``rel_path`` (its JSON text as it came, parsed by :meth:`get`)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                             (rel_path, result.sha256, result.model_version, result.prediction_json or "null",
                              result.predict_error))

    def get(self, rel_path: str) -> ClusterPrediction | None:
        with self._lock:
            row = self._db.execute("SELECT sha256, model_version, prediction, error FROM predictions"
                                   " WHERE rel_path = ?", (rel_path,)).fetchone()
        if row is None:
            return None
        return ClusterPrediction(row[0], row[1], json.loads(row[2]), row[3])

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._folder.cleanup()
