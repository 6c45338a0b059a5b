"""Typed, validated batchlabel configuration.

A config is a YAML file read **once** at the command-line entry point (:func:`load_config`) and passed down as an
immutable :class:`Config`. Nothing else in batchlabel reads the YAML, and nothing else reads the environment for
batchlabel's own settings: ``${VAR}`` interpolation happens here, and so do the default locations used when a key is
unset (:func:`user_cache_home`, :func:`default_weights_dir`, :func:`label_studio_venv_override`).

Rules:
- ``${VAR}`` and ``${VAR:-default}`` inside string values are replaced from the environment (secrets such as the
  Label Studio API key never have to live in the file). An unset variable with no default becomes ``null``.
  The key it was meant for is kept in :attr:`Config.unset_variables`, so messages name the variable.
- Relative paths are relative to the folder holding the config file.
- Duplicate keys and YAML alias bombs are refused (:mod:`batchlabel.yaml_loader`).
- Unknown keys are errors; every error names the file, the key path and what was expected, e.g.
  ``configs/cats.yaml: model.batch_size: expected a positive integer, got 'eight'``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchlabel.yaml_loader import YamlExpansionError, load_yaml

log = logging.getLogger(__name__)

#: A detector's confidence threshold for labels ``preannotate.detector.min_score`` does not name.
DEFAULT_DETECTOR_MIN_SCORE = 0.25

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

MODEL_NAMES = (
    "sam_vit_b", "sam_vit_l", "sam_vit_h", "mobile_sam", "litemedsam",
    "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
    "sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq",  # sam_hq: label_anything's name for sam_hq_vit_b
)
OUTPUT_KINDS = ("brush", "polygon", "rectangle")


class ConfigError(Exception):
    """A config problem a user can act on. ``str(error)`` is the whole message, one problem per line."""

    exit_code = 2


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StorageConfig(_Section):
    root: Path = Field(description="Label Studio local-files document root; watched for images")
    include: tuple[str, ...] = ("**/*.jpg", "**/*.jpeg", "**/*.png")
    exclude: tuple[str, ...] = ()
    stable_s: float = Field(default=1.0, ge=0, description="a file counts once size and mtime are unchanged this long")


class EmbeddedLabelStudioConfig(_Section):
    data_dir: Path | None = Field(default=None, description="default: <cache.dir>/label-studio")
    port: int = Field(default=8080, gt=0, lt=65536)
    username: str = "admin@example.com"
    password: str | None = None
    venv: Path | None = Field(default=None, description="Label Studio's own venv; default: .venv-ls next to the repo")


class LabelStudioConfig(_Section):
    url: str | None = None
    api_key: str | None = None
    project: str = "batchlabel"
    labels: tuple[str, ...] = ()
    label_config: Path | None = None
    embedded: EmbeddedLabelStudioConfig = EmbeddedLabelStudioConfig()
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _labels_or_config(self) -> LabelStudioConfig:
        if not self.labels and self.label_config is None:
            raise ValueError("expected `labels` (a list of class names) or `label_config` (a path to an XML file)")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be unique, got {list(self.labels)}")
        return self


class ModelConfig(_Section):
    name: Literal[
        "sam_vit_b", "sam_vit_l", "sam_vit_h", "mobile_sam", "litemedsam",
        "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
        "sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq",
    ] = "sam_vit_b"
    checkpoint: str = Field(
        default="auto",
        description="auto | a path | random (tests only); SAM 2.1 / HQ-SAM also a hub id or a Hugging Face folder",
    )
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    runtime: Literal["auto", "torch", "onnx"] = Field(
        default="auto", description="what runs the network: auto | torch | onnx (old name: backend)"
    )
    batch_size: int = Field(default=8, gt=0)
    max_wait_ms: float = Field(default=50.0, ge=0)
    weights_dir: Path | None = Field(default=None, description="where downloaded checkpoints go; default ~/.cache")
    download_url: str | None = Field(default=None, description="override the official checkpoint URL (mirrors)")
    allow_random_weights: bool = Field(default=False, description="test-only: permit checkpoint: random")

    @model_validator(mode="before")
    @classmethod
    def _backend_is_runtime(cls, data: Any) -> Any:
        """``model.backend`` is the old name of ``model.runtime`` (the ML backend is the service ``serve`` runs)."""
        if isinstance(data, dict) and "backend" in data:
            if "runtime" in data:
                raise ValueError("set model.runtime only (model.backend is its old name)")
            log.info("config: model.backend is the old name of model.runtime; read as runtime: %s", data["backend"])
            data = {("runtime" if key == "backend" else key): value for key, value in data.items()}
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return _check_device(value)

    @model_validator(mode="after")
    def _random_needs_switch(self) -> ModelConfig:
        if self.checkpoint == "random" and not self.allow_random_weights:
            raise ValueError("checkpoint: random is for tests only; set allow_random_weights: true to permit it")
        return self


#: ``preannotate.detector.model: trained``: the project's newest model from ``batchlabel train``.
TRAINED_DETECTOR = "trained"


def _check_device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+", value):
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return value


class DetectorConfig(_Section):
    """``preannotate.detector``: the object detector of mode ``detect`` (see ``batchlabel/annotate/detect.py``)."""

    model: str = Field(description="a local checkpoint (.pt), a local Hugging Face directory, a hub id, or `trained` "
                                   "(the project's newest model from `batchlabel train`)")
    kind: Literal["auto", "ultralytics", "sam3"] = Field(
        default="auto", description="auto: .pt file -> ultralytics, a directory or hub id of a SAM 3 model -> sam3"
    )
    classes: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="label -> the detector's class names (closed vocabulary) or text prompts; default: the label",
    )
    min_score: float | dict[str, float] = Field(default=DEFAULT_DETECTOR_MIN_SCORE,
                                                description="detector confidence, or per label")
    max_objects: int = Field(default=100, gt=0)
    overlap_iou: float = Field(
        default=0.7, ge=0, le=1, description="boxes of different labels overlapping more than this: keep the best"
    )
    device: str = Field(default="auto", description="auto (model.device) | cpu | cuda | cuda:N")

    @field_validator("min_score")
    @classmethod
    def _scores_in_range(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        scores = value.values() if isinstance(value, dict) else [value]
        if any(not 0 <= score <= 1 for score in scores):
            raise ValueError(f"expected a number in [0, 1] (or a label -> number mapping), got {value!r}")
        return value

    @field_validator("classes")
    @classmethod
    def _names_given(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        empty = [label for label, names in value.items() if not names or not all(n.strip() for n in names)]
        if empty:
            raise ValueError(f"labels {empty} need at least one non-empty class name or prompt")
        return value

    @model_validator(mode="after")
    def _trained_is_ultralytics(self) -> DetectorConfig:
        if self.model == TRAINED_DETECTOR and (self.kind == "sam3" or self.classes):
            raise ValueError("model: trained is an Ultralytics model whose classes are the project labels; "
                             "leave out kind: sam3 and classes")
        return self

    @property
    def trained(self) -> bool:
        """True for ``model: trained`` (the project's newest model from ``batchlabel train``)."""
        return self.model == TRAINED_DETECTOR

    def names_for(self, labels: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """label -> detector class names / prompts for every label (a label not in ``classes`` uses its name)."""
        return {label: tuple(self.classes.get(label, (label,))) for label in labels}

    def min_score_for(self, label: str) -> float:
        if isinstance(self.min_score, dict):
            return float(self.min_score.get(label, DEFAULT_DETECTOR_MIN_SCORE))
        return float(self.min_score)


class PreannotateConfig(_Section):
    mode: Literal["everything", "boxes", "points", "detect", "none"] = "everything"
    default_label: str | None = None
    outputs: tuple[Literal["brush", "polygon", "rectangle"], ...] = ("brush", "rectangle")
    min_score: float = Field(default=0.88, ge=0, le=1, description="minimum predicted IoU of a kept mask")
    stability_score_thresh: float = Field(default=0.92, ge=0, le=1)
    points_per_side: int = Field(default=16, gt=0)
    min_area_px: int = Field(default=100, ge=0)
    max_masks: int = Field(default=50, gt=0)
    polygon_tolerance_px: float = Field(default=1.5, ge=0)
    boxes_from: tuple[Literal["tasks", "coco", "sidecar"], ...] = ("tasks",)
    coco_file: Path | None = None
    detector: DetectorConfig | None = None

    @model_validator(mode="after")
    def _detect_needs_detector(self) -> PreannotateConfig:
        if self.mode == "detect" and self.detector is None:
            raise ValueError("mode: detect needs a `detector` section (at least `detector.model`)")
        return self


GIB = 1 << 30


class CacheConfig(_Section):
    dir: Path = Path(".batchlabel")
    max_gb: float = Field(default=50.0, gt=0)

    @property
    def max_bytes(self) -> int:
        """The embedding store's byte cap (``max_gb`` GiB)."""
        return int(self.max_gb * GIB)

    @property
    def embeddings_dir(self) -> Path:
        """The embedding store's folder."""
        return self.dir / "embeddings"

    @property
    def onnx_dir(self) -> Path:
        """Where ``export-onnx`` writes and the encoder/decoder look for exported ONNX graphs."""
        return self.dir / "onnx"


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8003, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    allow_remote_urls: bool = False
    max_request_mb: float = Field(default=20.0, gt=0)
    multimask: bool = False

    @model_validator(mode="after")
    def _auth_pair(self) -> ServeConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password for HTTP basic auth, or neither")
        return self


class AutoBuildConfig(_Section):
    """When ``watch`` builds the dataset by itself (into a new versioned folder with a ``latest`` link)."""

    when: Literal["never", "all", "fraction", "tag"] = Field(
        default="never", description="never | all (every task annotated) | fraction | tag (#build in the description)"
    )
    fraction: float = Field(default=1.0, gt=0, le=1)
    tag: str = "build"
    check_every_s: float = Field(default=60.0, gt=0)


#: The formats ``build-dataset`` writes (``dataset.formats``, ``--format``): COCO RLE, COCO polygons, Ultralytics
#: YOLO segment, Pascal VOC segmentation PNGs.
DatasetFormat = Literal["coco", "coco-polygon", "yolo", "voc"]
DATASET_FORMATS: tuple[str, ...] = get_args(DatasetFormat)


class DatasetConfig(_Section):
    out: Path = Path("dataset")
    template: Literal["mask-rcnn_r50_fpn", "rtmdet-ins_s"] = "mask-rcnn_r50_fpn"
    val_fraction: float = Field(default=0.2, ge=0, lt=1)
    seed: int = 0
    formats: tuple[DatasetFormat, ...] = Field(
        default=("coco",), min_length=1, description="the formats written, each once: coco, coco-polygon, yolo, voc"
    )
    polygon_tolerance_px: float = Field(
        default=0.25, ge=0, description="how far an exported polygon may stray from its mask's outline, in pixels"
    )
    auto_build: AutoBuildConfig = AutoBuildConfig()

    @field_validator("formats")
    @classmethod
    def _formats_once(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({name for name in formats if formats.count(name) > 1})
        if repeated:
            raise ValueError(f"formats listed more than once: {repeated}")
        return formats


class TrainConfig(_Section):
    """``train``: fine-tuning a detector on the reviewed tasks (``batchlabel train``; see ``batchlabel/learn``).
    The defaults give a first model of a new class on a CPU in minutes."""

    base: Path | None = Field(
        default=None, description="the Ultralytics .pt to start from; default: YOLO11n's COCO weights (as make run "
                                  "fetches them) in model.weights_dir",
    )
    epochs: int = Field(default=20, gt=0)
    imgsz: int = Field(default=320, ge=32, description="training image size (longest side, pixels)")
    batch: int = Field(default=4, gt=0, description="images per training step")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    min_reviewed: int = Field(default=10, gt=0, description="refuse to train on fewer reviewed tasks")
    every_n_annotations: int = Field(
        default=0, ge=0, description="watch/serve start a training after this many new reviews (0: off)"
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return _check_device(value)


class ReportConfig(_Section):
    manual_s_per_object: float = Field(
        default=80.0, gt=0, description="stated manual baseline: seconds per object drawn by hand (time-saved estimate)"
    )
    baseline_source: str = "COCO (Lin et al. 2014): about 80 s per polygon instance mask drawn by hand"


class Config(_Section):
    storage: StorageConfig
    label_studio: LabelStudioConfig
    model: ModelConfig = ModelConfig()
    preannotate: PreannotateConfig = PreannotateConfig()
    cache: CacheConfig = CacheConfig()
    serve: ServeConfig = ServeConfig()
    dataset: DatasetConfig = DatasetConfig()
    report: ReportConfig = ReportConfig()
    train: TrainConfig = TrainConfig()
    source: Path | None = Field(default=None, description="the file this config was read from (set by the loader)")
    unset_variables: dict[str, str] = Field(
        default_factory=dict, description="key path -> the ${VAR} it named, unset in the environment (by the loader)"
    )

    @model_validator(mode="after")
    def _default_label_known(self) -> Config:
        pre = self.preannotate
        labels = self.label_studio.labels
        if pre.default_label is not None and labels and pre.default_label not in labels:
            raise ValueError(
                f"preannotate.default_label {pre.default_label!r} is not one of label_studio.labels "
                f"{list(self.label_studio.labels)}"
            )
        detector = pre.detector
        if detector is not None and labels:
            per_label: dict[str, Iterable[str]] = {
                "classes": detector.classes.keys(),
                "min_score": detector.min_score.keys() if isinstance(detector.min_score, dict) else (),
            }
            for key, named in per_label.items():
                unknown = sorted(set(named) - set(labels))
                if unknown:
                    raise ValueError(f"preannotate.detector.{key}: {unknown} not in label_studio.labels {list(labels)}")
        return self

    def unset_hint(self, key_path: str, fallback: str) -> str:
        """Why ``key_path`` (e.g. ``label_studio.api_key``) has no value: the ``${VAR}`` the file named for it is
        unset, or ``fallback`` when the file set no variable there."""
        name = self.unset_variables.get(key_path)
        if name is None:
            return fallback
        return f"${{{name}}}, named for it in {self.source}, is not set in the environment (export {name})"

    @property
    def embedded_label_studio(self) -> bool:
        """True when batchlabel starts its own Label Studio (``label_studio.url`` is null)."""
        return self.label_studio.url is None

    @property
    def label_studio_data_dir(self) -> Path:
        return self.label_studio.embedded.data_dir or (self.cache.dir / "label-studio")

    @property
    def models_dir(self) -> Path:
        """Where ``batchlabel train`` keeps the project models: ``<cache.dir>/models``."""
        return self.cache.dir / "models"

    @property
    def journal_path(self) -> Path:
        return self.cache.dir / "journal.sqlite3"

    @property
    def embeddings_dir(self) -> Path:
        return self.cache.embeddings_dir


def _interpolate(value: Any, environ: dict[str, str], unset: dict[str, str] | None = None, where: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree. A whole-value ``${VAR}`` that
    is unset and has no default is recorded in ``unset`` (dotted key path -> variable name)."""
    if isinstance(value, dict):
        return {key: _interpolate(item, environ, unset, f"{where}.{key}" if where else str(key))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, environ, unset, f"{where}.{index}") for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    whole = ENV_PATTERN.fullmatch(value)
    if whole:
        name, default = whole.group(1), whole.group(2)
        if name not in environ and default is None and unset is not None:
            unset[where] = name
        return environ.get(name, default)

    def substitute(match: re.Match[str]) -> str:
        return environ.get(match.group(1), match.group(2) or "")

    return ENV_PATTERN.sub(substitute, value)


_PATH_KEYS = (
    ("storage", "root"),
    ("label_studio", "label_config"),
    ("label_studio", "embedded", "data_dir"),
    ("label_studio", "embedded", "venv"),
    ("model", "weights_dir"),
    ("preannotate", "coco_file"),
    ("cache", "dir"),
    ("dataset", "out"),
    ("train", "base"),
)


def _resolve_relative_paths(config: Config, base: Path) -> Config:
    """Return a copy of ``config`` whose relative paths are anchored at ``base`` (the config file's folder)."""
    data = config.model_dump()
    for key_path in _PATH_KEYS:
        node = data
        for key in key_path[:-1]:
            node = node[key]
        value = node[key_path[-1]]
        if value is not None and not Path(value).expanduser().is_absolute():
            node[key_path[-1]] = (base / value).resolve()
        elif value is not None:
            node[key_path[-1]] = Path(value).expanduser()
    model = data["model"]
    if model["checkpoint"] not in ("auto", "random"):
        model["checkpoint"] = _path_or_hub_id(model["checkpoint"], base)
    detector = data["preannotate"]["detector"]
    if detector is not None and detector["model"] != TRAINED_DETECTOR:
        detector["model"] = _path_or_hub_id(detector["model"], base)
    return Config.model_validate(data)


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_hub_id(value: str) -> bool:
    """``org/name`` (letters, digits, ``_.-``), not a checkpoint file name (``.pt``/``.pth``): a Hugging Face hub id."""
    return _HUB_ID.fullmatch(value) is not None and not value.endswith((".pt", ".pth"))


def _path_or_hub_id(value: str, base: Path) -> str:
    """A model location from the config: an absolute path as is (``~`` expanded), a relative one against ``base``,
    except a hub id (``org/name``) with no such local path, which is kept for the hub."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    local = (base / path).resolve()
    return value if not local.exists() and is_hub_id(value) else str(local)


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    given = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see configs/cats.yaml for every key)"
    if kind == "missing":
        return "required key is missing"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected an integer, got {given!r}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {given!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {given!r}"
    if kind == "greater_than":
        what = "a positive number" if ctx.get("gt") == 0 else f"a number greater than {ctx.get('gt')}"
        return f"expected {what}, got {given!r}"
    if kind in ("greater_than_equal", "less_than", "less_than_equal"):
        return f"{error['msg'].replace('Input should be', 'expected')}, got {given!r}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {given!r}"
    if kind in ("string_type", "path_type"):
        return f"expected a string, got {given!r}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {given!r}"
    if kind == "model_type" or kind == "dict_type":
        return f"expected a mapping of keys, got {given!r}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}, got {given!r}"


def _positive_int_message(error: dict[str, Any], message: str) -> str:
    """Say 'a positive integer' for integer keys that must be > 0 (the most common user typo)."""
    loc = error["loc"]
    node: Any = Config
    field = None
    for part in loc:
        fields = getattr(node, "model_fields", None)
        if not fields or part not in fields:
            return message
        field = fields[part]
        node = field.annotation
    if field is not None and field.annotation is int and any(getattr(m, "gt", None) == 0 for m in field.metadata):
        return f"expected a positive integer, got {error.get('input')!r}"
    return message


def parse_config(raw: Any, *, source: str, base_dir: Path, environ: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML tree. Raises :class:`ConfigError` listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    unset: dict[str, str] = {}
    data = _interpolate(raw, dict(os.environ) if environ is None else environ, unset)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            details = dict(error)
            lines.append(f"{source}: {key}: {_positive_int_message(details, _describe(details))}")
        raise ConfigError("\n".join(lines)) from None
    config = _resolve_relative_paths(config, base_dir)
    return config.model_copy(update={"source": Path(source), "unset_variables": unset})


def load_config(path: str | os.PathLike[str], *, environ: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate a YAML config file. Raises :class:`ConfigError` with file and key names."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        raw = load_yaml(text)
    except YamlExpansionError as exc:
        raise ConfigError(f"{path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(raw, source=str(path), base_dir=path.resolve().parent, environ=environ)


# --------------------------------------------------------------------------------- default locations

#: Names Label Studio's virtual environment when set (else ``.venv-ls`` in the source checkout).
LABEL_STUDIO_VENV_VARIABLE = "BATCHLABEL_LABEL_STUDIO_VENV"


def user_cache_home() -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache`` (an empty variable counts as unset); read when called, not at import."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def default_weights_dir() -> Path:
    """Where downloaded checkpoints go when ``model.weights_dir`` is not set: ``<user cache>/batchlabel/weights``."""
    return user_cache_home() / "batchlabel" / "weights"


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def label_studio_venv_override() -> Path | None:
    """``$BATCHLABEL_LABEL_STUDIO_VENV`` as a path, ``None`` when unset or empty."""
    value = os.environ.get(LABEL_STUDIO_VENV_VARIABLE)
    return Path(value) if value else None


#: Set by batchlabel only for the processes it starts itself (a background ``train`` of ``serve``/``watch`` under
#: ``batchlabel up``): the URL and API key of the embedded Label Studio already running, so the child attaches to it
#: instead of starting a second server on the same data folder.
RUNNING_LABEL_STUDIO_URL_VARIABLE = "BATCHLABEL_RUNNING_LABEL_STUDIO_URL"
RUNNING_LABEL_STUDIO_KEY_VARIABLE = "BATCHLABEL_RUNNING_LABEL_STUDIO_API_KEY"


def running_label_studio_override() -> tuple[str, str] | None:
    """``(url, api_key)`` of the running embedded Label Studio a parent batchlabel handed on, else ``None``."""
    url = os.environ.get(RUNNING_LABEL_STUDIO_URL_VARIABLE)
    key = os.environ.get(RUNNING_LABEL_STUDIO_KEY_VARIABLE)
    return (url, key) if url and key else None
