"""The batched image encoder: files in, :class:`ImageEmbedding` values out, through the store.

Pipeline of :meth:`BatchEncoder.encode_files`::

    paths -> [load_workers threads: read + sha256 -> store hit? -> decode + orient + resize to a uint8 canvas]
          -> bounded queue (queue_depth) -> [caller's thread: dynamic batches of <= max_batch_images, waiting at most
             max_wait_ms for a batch to fill] -> encoder runtime -> store.put -> EncodeResult

- A source may be a :class:`ReadImage` (bytes the caller already read and hashed, e.g. the ingestion pipeline, which
  journals that hash): its bytes are neither read nor hashed again, so the embedding belongs to exactly the bytes
  whose sha256 the caller holds.
- ``gathered=True``: the caller already waited for a batch to fill (the pipeline's batching); the files of that call
  are encoded as soon as they are loaded, with no second ``max_wait_ms``.

- A file whose bytes are already in the store (by sha256 and model id) is not decoded nor encoded (``cached=True``).
- Every file yields exactly one :class:`EncodeResult`, in completion order; a bad file yields ``error`` (one line)
  and never stops the batch.
- Runtimes (``model.runtime``): torch (CUDA: pinned memory + non-blocking copies, bf16/fp16 autocast per the model's
  precision, CUDA OOM -> the batch is halved and retried, and later batches stay at the smaller size; CPU: fp32 or
  bf16 autocast) or ONNX Runtime on the CPU when an exported encoder exists for this model id (see
  :mod:`batchlabel.infer.onnx_export`).
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    LoadedImage,
    ReadImage,
    decode_rgb,
    read_image_file,
)
from batchlabel.infer.preprocess import normalise_canvas, resize_to_canvas

if TYPE_CHECKING:
    import torch

    from batchlabel.infer.models import LoadedModel
    from batchlabel.infer.store import EmbeddingStore

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "onnx"]
_DONE = object()


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent on one image per stage: ``load`` (read + hash + decode + resize, in a loader thread),
    ``encode`` (its share of the batch's encoder time), ``store`` (lookup + write)."""

    load_s: float = 0.0
    encode_s: float = 0.0
    store_s: float = 0.0


@dataclass(frozen=True)
class EncodeResult:
    """The outcome for one file: ``embedding`` (None on error), ``error`` (one line, None on success), ``cached``
    (True when the store already had it), ``sha256`` of the file bytes when it could be read."""

    path: Path
    embedding: ImageEmbedding | None
    error: str | None
    cached: bool
    timings: StageTimes = StageTimes()
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EncodeStats:
    """Totals over every :meth:`BatchEncoder.encode_files` call of one encoder (for the benchmark and summaries)."""

    images: int = 0
    encoded: int = 0
    cached: int = 0
    failed: int = 0
    batches: int = 0
    load_s: float = 0.0
    encode_s: float = 0.0
    store_s: float = 0.0
    wall_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


ImageSource = str | os.PathLike[str] | ReadImage


@dataclass
class _Prepared:
    path: Path
    sha256: str
    canvas: np.ndarray  # (3, S, S) uint8 (SAM), or the runtime's own canvas (PreparingRuntime)
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    exif_orientation: int
    load_s: float
    store_s: float


class EncodingModel(Protocol):
    """What the encoder needs of a model that brings its own runtime (a model family): its store address."""

    model_id: str


class EncoderRuntime(Protocol):
    """Runs the image encoder on a batch of prepared canvases."""

    name: str
    precision: str

    def encode(
        self, canvases: np.ndarray, input_sizes: list[tuple[int, int]]
    ) -> np.ndarray | Mapping[str, np.ndarray]:
        """``(B, 3, S, S)`` canvases -> ``(B, 256, 64, 64)`` float32 features, or named float32 arrays each
        ``(B, ...)`` with ``"image_embed"`` first and the family's extras after it."""
        ...


class PreparingRuntime(EncoderRuntime, Protocol):
    """A runtime that makes its own canvases (a model family's image processor) instead of SAM's resize + pad."""

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """``(H, W, 3)`` uint8 RGB -> a ``(3, S, S)`` canvas for :meth:`encode` and ``(h, w)`` of the image in it."""
        ...


class TorchRuntime:
    """The image encoder of ``model.sam`` in torch; CUDA batches with OOM back-off."""

    name = "torch"

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.precision = model.precision
        self.max_batch_ok: int | None = None  # lowered after a CUDA OOM

    def _autocast(self) -> object:
        import contextlib

        import torch

        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if self.precision not in dtypes:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.model.device.type, dtype=dtypes[self.precision])

    def _run(self, canvases: torch.Tensor, input_sizes: list[tuple[int, int]]) -> np.ndarray:
        import torch

        device = self.model.device
        if device.type == "cpu" and len(input_sizes) > 1:
            # On CPU a batch costs more per image than single images (2 cores, LiteMedSAM: 2.9 s vs 1.9 s per image
            # at batch 4; cache pressure): batches are a GPU tool, so CPU encodes go one image at a time.
            singles = [self._run(canvases[i : i + 1], input_sizes[i : i + 1]) for i in range(len(input_sizes))]
            return np.concatenate(singles)
        x = canvases.to(device, non_blocking=device.type == "cuda")
        with torch.inference_mode(), self._autocast():  # type: ignore[attr-defined]
            x = normalise_canvas(x, input_sizes, self.model.spec)
            features = self.model.sam.image_encoder(x)
        return features.float().cpu().numpy()

    def encode(self, canvases: np.ndarray, input_sizes: list[tuple[int, int]]) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(canvases)
        if self.model.device.type == "cuda":
            tensor = tensor.pin_memory()
        return self._encode_with_backoff(tensor, input_sizes)

    def _encode_with_backoff(self, tensor: torch.Tensor, input_sizes: list[tuple[int, int]]) -> np.ndarray:
        import torch

        limit = self.max_batch_ok or len(input_sizes)
        if len(input_sizes) > limit:
            parts = [
                self._encode_with_backoff(tensor[i : i + limit], input_sizes[i : i + limit])
                for i in range(0, len(input_sizes), limit)
            ]
            return np.concatenate(parts)
        try:
            return self._run(tensor, input_sizes)
        except torch.cuda.OutOfMemoryError:
            if len(input_sizes) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(input_sizes) // 2
            self.max_batch_ok = half
            log.warning("CUDA out of memory on a batch of %d images; retrying as batches of %d", len(input_sizes), half)
            return np.concatenate(
                [
                    self._encode_with_backoff(tensor[:half], input_sizes[:half]),
                    self._encode_with_backoff(tensor[half:], input_sizes[half:]),
                ]
            )


def select_runtime(model: LoadedModel, runtime: Runtime, onnx_dir: Path | None) -> EncoderRuntime:
    """``torch`` always works; ``onnx`` needs an exported encoder in ``onnx_dir``; ``auto`` = ONNX Runtime on the
    CPU when the file exists, torch otherwise (always torch on CUDA)."""
    from batchlabel.infer.onnx_export import OrtEncoder, onnx_paths

    if runtime == "torch":
        return TorchRuntime(model)
    encoder_path = onnx_paths(model.model_id, onnx_dir).encoder if onnx_dir is not None else None
    if runtime == "onnx":
        if encoder_path is None or not encoder_path.is_file():
            from batchlabel.config import ConfigError

            raise ConfigError(
                f"model.runtime: onnx, but no exported encoder {encoder_path or '<no onnx folder>'} "
                f"for {model.model_id}; run `batchlabel export-onnx CONFIG` first"
            )
        return OrtEncoder(encoder_path, model.spec)
    if model.device.type == "cpu" and model.precision == "fp32" and encoder_path is not None and encoder_path.is_file():
        return OrtEncoder(encoder_path, model.spec)
    return TorchRuntime(model)


def _sam_model(model: LoadedModel | EncodingModel) -> LoadedModel:
    """``model`` as the ``segment_anything`` model the torch/ONNX runtimes need (a family brings its own runtime)."""
    from batchlabel.infer.models import LoadedModel

    if not isinstance(model, LoadedModel):
        raise TypeError(f"{model.model_id}: a model family encodes through its own runtime (encoder_runtime=)")
    return model


def _row(features: np.ndarray | Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """Image ``index`` of a runtime's batch output as named ``(1, ...)`` arrays (``"image_embed"`` first)."""
    named = features if isinstance(features, Mapping) else {"image_embed": features}
    return {name: array[index : index + 1] for name, array in named.items()}


class BatchEncoder:
    """Encode image files in dynamic batches through an optional :class:`EmbeddingStore`.

    Args:
        model: the loaded model (a model family with its own ``encoder_runtime``: only its ``model_id`` is read).
        store: where embeddings are looked up (by file sha256) and written; ``None`` = encode everything, keep nothing.
        max_batch_images: largest batch given to the encoder.
        max_wait_ms: how long a partial batch waits for more images before it is encoded.
        load_workers: loader threads (read, hash, decode, resize).
        queue_depth: prepared images buffered between loaders and the encoder (default ``2 * max_batch_images``).
        runtime: ``auto`` | ``torch`` | ``onnx`` (``model.runtime``, see :func:`select_runtime`).
        onnx_dir: the folder of exported ONNX files (``batchlabel export-onnx``).
        max_pixels: larger images are refused as decompression bombs.
        encoder_runtime: a runtime to use instead of :func:`select_runtime`'s (a model family's
            :class:`~batchlabel.infer.families.runtime.FamilyRuntime`, with ``model`` that family).
    """

    def __init__(
        self,
        model: LoadedModel | EncodingModel,
        store: EmbeddingStore | None,
        *,
        max_batch_images: int = 8,
        max_wait_ms: float = 50.0,
        load_workers: int = 2,
        queue_depth: int | None = None,
        runtime: Runtime = "auto",
        onnx_dir: Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        encoder_runtime: EncoderRuntime | PreparingRuntime | None = None,
    ) -> None:
        if max_batch_images <= 0 or load_workers <= 0:
            raise ValueError("max_batch_images and load_workers must be positive")
        self.model = model
        self.store = store
        self.max_batch_images = max_batch_images
        self.max_wait_s = max_wait_ms / 1000.0
        self.load_workers = load_workers
        self.queue_depth = queue_depth or 2 * max_batch_images
        self.max_pixels = max_pixels
        self.runtime: EncoderRuntime = encoder_runtime or select_runtime(_sam_model(model), runtime, onnx_dir)
        prepare = getattr(self.runtime, "prepare", None)
        if prepare is None:
            spec = _sam_model(model).spec  # once, not per image on the loader threads
            prepare = functools.partial(resize_to_canvas, spec=spec)
        self._prepare: Callable[[np.ndarray], tuple[np.ndarray, tuple[int, int]]] = prepare
        self.stats = EncodeStats()
        log.info("encoder for %s: runtime %s, precision %s", model.model_id, self.runtime.name, self.runtime.precision)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    # ------------------------------------------------------------------------------------------------ single image

    def encode_image(self, loaded: LoadedImage) -> ImageEmbedding:
        """Embed one already-decoded image (store consulted and filled when there is one)."""
        if self.store is not None:
            hit = self.store.get(loaded.sha256, self.model_id)
            if hit is not None:
                return hit
        canvas, input_size = self._prepare(np.asarray(loaded.rgb))
        features = self.runtime.encode(canvas[None], [input_size])
        embedding = self._embedding(_row(features, 0), loaded.sha256, loaded.original_size, input_size,
                                    loaded.exif_orientation)
        if self.store is not None:
            self.store.put(embedding)
        return embedding

    def _embedding(
        self, features: Mapping[str, np.ndarray], sha256: str, original_size: tuple[int, int],
        input_size: tuple[int, int], exif_orientation: int,
    ) -> ImageEmbedding:
        arrays = {name: np.ascontiguousarray(array.astype(np.float16)) for name, array in features.items()}
        return ImageEmbedding(
            features=arrays.pop("image_embed"),
            extras=arrays,
            original_size=original_size,
            input_size=input_size,
            model_id=self.model_id,
            precision=self.runtime.precision,
            image_sha256=sha256,
            exif_orientation=exif_orientation,
        )

    # ----------------------------------------------------------------------------------------------------- loading

    def _load_one(self, source: Path | ReadImage) -> _Prepared | EncodeResult:
        start = time.perf_counter()
        if isinstance(source, ReadImage):
            read = source
        else:
            try:
                read = read_image_file(source)
            except OSError as exc:
                reason = "file not found" if isinstance(exc, FileNotFoundError) else f"cannot read file: {exc.strerror}"
                return EncodeResult(source, None, reason, False, StageTimes(load_s=time.perf_counter() - start))
        path, data, sha256 = read.path, read.data, read.sha256
        read_s = time.perf_counter() - start
        store_s = 0.0
        if self.store is not None:
            t = time.perf_counter()
            hit = self.store.get(sha256, self.model_id)
            store_s = time.perf_counter() - t
            if hit is not None:
                return EncodeResult(path, hit, None, True, StageTimes(load_s=read_s, store_s=store_s), sha256)
        try:
            if not data:
                raise ImageLoadError(path, "empty file (0 bytes)")
            rgb, orientation = decode_rgb(data, name=path, max_pixels=self.max_pixels)
            canvas, input_size = self._prepare(rgb)
        except ImageLoadError as exc:
            return EncodeResult(path, None, exc.reason, False, StageTimes(load_s=time.perf_counter() - start), sha256)
        except Exception as exc:  # noqa: BLE001 - one undecodable file must not stop the batch; the reason is reported
            log.debug("unexpected error loading %s", path, exc_info=True)
            reason = f"cannot decode image: {exc.__class__.__name__}: {exc}"
            return EncodeResult(path, None, " ".join(reason.split()), False,
                                StageTimes(load_s=time.perf_counter() - start), sha256)
        return _Prepared(path, sha256, canvas, input_size, (int(rgb.shape[0]), int(rgb.shape[1])), orientation,
                         time.perf_counter() - start - store_s, store_s)

    def _loader(self, sources: queue.SimpleQueue, out: queue.Queue, stop: threading.Event) -> None:
        """Load files until none are left. Any exception becomes that file's failure, and ``_DONE`` is always sent,
        so the consumer in :meth:`encode_files` never waits for a thread that died."""
        try:
            while not stop.is_set():
                try:
                    source = sources.get_nowait()
                except queue.Empty:
                    break
                path = source.path if isinstance(source, ReadImage) else source
                start = time.perf_counter()
                try:
                    item = self._load_one(source)
                except Exception as exc:  # noqa: BLE001 - e.g. an unreadable store: this file fails, the batch goes on
                    log.warning("%s: loading failed", path, exc_info=True)
                    reason = " ".join(f"cannot load: {exc.__class__.__name__}: {exc}".split())[:300]
                    item = EncodeResult(path, None, reason, False, StageTimes(load_s=time.perf_counter() - start))
                self._put(out, item, stop)
        finally:
            self._put(out, _DONE, stop)

    @staticmethod
    def _put(out: queue.Queue, item: object, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # ---------------------------------------------------------------------------------------------------- encoding

    def encode_files(self, sources: Iterable[ImageSource], *, gathered: bool = False) -> Iterator[EncodeResult]:
        """Yield one :class:`EncodeResult` per source (completion order; ``path`` is the source's path). Closing the
        iterator early stops the loaders. ``gathered``: the caller already batched these sources, so a batch is encoded
        when full or when every source is loaded, never after a second wait of ``max_wait_ms``."""
        source_list = [s if isinstance(s, ReadImage) else Path(s) for s in sources]
        if not source_list:
            return
        wall_start = time.perf_counter()
        todo: queue.SimpleQueue[Path | ReadImage] = queue.SimpleQueue()
        for source in source_list:
            todo.put(source)
        prepared: queue.Queue[object] = queue.Queue(maxsize=self.queue_depth)
        stop = threading.Event()
        workers = [
            threading.Thread(target=self._loader, args=(todo, prepared, stop), name=f"batchlabel-load-{i}",
                             daemon=True)
            for i in range(min(self.load_workers, len(source_list)))
        ]
        for worker in workers:
            worker.start()
        running = len(workers)
        batch: list[_Prepared] = []
        batch_deadline: float | None = None  # the first image of a batch waits at most max_wait_s for company
        try:
            while running or batch:
                item: object = None
                if running:
                    timeout = None if batch_deadline is None else max(0.0, batch_deadline - time.perf_counter())
                    try:
                        item = prepared.get(timeout=timeout)
                    except queue.Empty:
                        item = None
                if item is _DONE:
                    running -= 1
                elif isinstance(item, EncodeResult):
                    yield self._count(item)
                elif isinstance(item, _Prepared):
                    if not batch and not gathered:
                        batch_deadline = time.perf_counter() + self.max_wait_s
                    batch.append(item)
                due = batch_deadline is not None and time.perf_counter() >= batch_deadline
                if batch and (len(batch) >= self.max_batch_images or not running or due):
                    yield from self._encode_batch(batch)
                    batch = []
                    batch_deadline = None
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=5.0)
            self.stats.wall_s += time.perf_counter() - wall_start

    def _count(self, result: EncodeResult) -> EncodeResult:
        stats = self.stats
        stats.images += 1
        stats.load_s += result.timings.load_s
        stats.encode_s += result.timings.encode_s
        stats.store_s += result.timings.store_s
        if result.error is not None:
            stats.failed += 1
        elif result.cached:
            stats.cached += 1
        else:
            stats.encoded += 1
        return result

    def _encode_batch(self, batch: Sequence[_Prepared]) -> Iterator[EncodeResult]:
        canvases = np.stack([item.canvas for item in batch])
        sizes = [item.input_size for item in batch]
        start = time.perf_counter()
        try:
            features = self.runtime.encode(canvases, sizes)
        except Exception as exc:  # noqa: BLE001 - e.g. OOM on a single image: report each file, keep going
            log.exception("encoder failed on a batch of %d images", len(batch))
            reason = " ".join(f"encoder failed: {exc.__class__.__name__}: {exc}".split())
            for item in batch:
                yield self._count(EncodeResult(item.path, None, reason, False,
                                               StageTimes(load_s=item.load_s, store_s=item.store_s), item.sha256))
            return
        encode_s = (time.perf_counter() - start) / len(batch)
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(batch))
        for i, item in enumerate(batch):
            embedding = self._embedding(_row(features, i), item.sha256, item.original_size, item.input_size,
                                        item.exif_orientation)
            store_s = item.store_s
            error = None
            if self.store is not None:
                t = time.perf_counter()
                try:
                    self.store.put(embedding)
                except OSError as exc:
                    error = f"cannot write the embedding store: {exc.strerror or exc}"
                store_s += time.perf_counter() - t
            yield self._count(EncodeResult(item.path, embedding if error is None else None, error, False,
                                           StageTimes(item.load_s, encode_s, store_s), item.sha256))
