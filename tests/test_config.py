"""Config loading: interpolation, relative paths, and errors that name the file, the key and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from batchlabel.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def minimal(**overrides: dict) -> dict:
    data: dict = {"storage": {"root": "images"}, "label_studio": {"labels": ["cat", "person"]}}
    for key, value in overrides.items():
        data.setdefault(key, {}).update(value)
    return data


def test_worked_example_validates_and_resolves_paths_next_to_the_config() -> None:
    config = load_config(REPO / "configs" / "cats.yaml", environ={})
    assert config.storage.root == REPO / "data" / "cats"
    assert config.cache.dir == REPO / ".batchlabel"
    assert config.label_studio.labels == ("cat", "person")
    assert config.label_studio.url is None and config.embedded_label_studio
    assert config.model.batch_size == 8


def test_env_interpolation_keeps_secrets_out_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(label_studio={"api_key": "${LS_KEY}", "url": "${LS_URL:-http://127.0.0.1:8080}"}))
    config = load_config(path, environ={"LS_KEY": "s3cret"})
    assert config.label_studio.api_key == "s3cret"
    assert config.label_studio.url == "http://127.0.0.1:8080"
    unset = load_config(path, environ={})
    assert unset.label_studio.api_key is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"model": {"batch_size": "eight"}}, "model.batch_size: expected a positive integer, got 'eight'"),
        ({"model": {"batch_size": 0}}, "model.batch_size: expected a positive integer, got 0"),
        ({"model": {"bach_size": 4}}, "model.bach_size: unknown key"),
        ({"model": {"name": "sam_vit_q"}}, "model.name: expected one of"),
        ({"model": {"device": "gpu"}}, "model.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        ({"model": {"checkpoint": "random"}}, "checkpoint: random is for tests only"),
        ({"preannotate": {"outputs": ["mask"]}}, "preannotate.outputs.0: expected one of"),
        ({"preannotate": {"min_score": 2}}, "preannotate.min_score: expected less than or equal to 1, got 2"),
        ({"preannotate": {"default_label": "dog"}}, "preannotate.default_label 'dog' is not one of"),
        ({"serve": {"username": "ann"}}, "serve: set both username and password"),
        ({"dataset": {"val_fraction": 1.5}}, "dataset.val_fraction: expected less than 1, got 1.5"),
        ({"storage": {"include": "*.jpg"}}, "storage.include: expected a list, got '*.jpg'"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, overrides: dict, expected: str) -> None:
    path = write(tmp_path, minimal(**overrides))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_unknown_section_and_missing_root_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, {"storage": {}, "label_studio": {"labels": ["cat"]}, "modle": {}})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert f"{path}: storage.root: required key is missing" in message
    assert f"{path}: modle: unknown key" in message


def test_labels_or_label_config_required(tmp_path: Path) -> None:
    path = write(tmp_path, {"storage": {"root": "x"}, "label_studio": {}})
    with pytest.raises(ConfigError, match="label_studio: expected `labels`"):
        load_config(path, environ={})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("storage:\n  root: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML \(line"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_immutable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()), environ={})
    with pytest.raises(Exception, match="frozen"):
        config.model.batch_size = 3  # type: ignore[misc]


def test_model_backend_is_read_as_runtime_and_derived_cache_values_are_on_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="batchlabel.config"):
        config = load_config(write(tmp_path, minimal(model={"backend": "torch"}, cache={"max_gb": 0.5})))
    assert config.model.runtime == "torch"
    assert "model.backend is the old name of model.runtime" in caplog.text
    assert config.cache.max_bytes == 1 << 29
    assert config.cache.onnx_dir == config.cache.dir / "onnx"
    assert config.embeddings_dir == config.cache.dir / "embeddings"
    with pytest.raises(ConfigError, match="set model.runtime only"):
        load_config(write(tmp_path, minimal(model={"backend": "torch", "runtime": "onnx"}), "both.yaml"))


def test_default_locations_are_read_from_the_environment_when_asked(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from batchlabel.config import default_weights_dir, label_studio_venv_override, user_cache_home
    from batchlabel.sync.server import default_template_dir, default_venv

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BATCHLABEL_LABEL_STUDIO_VENV", str(tmp_path / "ls-venv"))
    assert default_weights_dir() == tmp_path / "cache" / "batchlabel" / "weights"
    assert default_template_dir().parent == tmp_path / "cache" / "batchlabel"
    assert label_studio_venv_override() == default_venv() == tmp_path / "ls-venv"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset, for weights and the template alike
    monkeypatch.setenv("BATCHLABEL_LABEL_STUDIO_VENV", "")
    assert user_cache_home() == Path.home() / ".cache"
    assert label_studio_venv_override() is None and default_venv().name == ".venv-ls"


def test_a_hub_id_checkpoint_stays_a_hub_id_and_paths_resolve(tmp_path: Path) -> None:
    """``model.checkpoint: org/name`` (SAM 2.1 / HQ-SAM from the hub) must reach the hub resolver as written; a
    relative file path resolves against the config's folder, ``~`` expands, and a local folder wins over a hub id."""
    def checkpoint(value: str) -> str:
        data = {"storage": {"root": str(tmp_path)}, "label_studio": {"labels": ["cat"]},
                "model": {"name": "sam2.1_hiera_tiny", "checkpoint": value}}
        return load_config(write(tmp_path, data)).model.checkpoint

    assert checkpoint("facebook/sam2.1-hiera-tiny") == "facebook/sam2.1-hiera-tiny"
    assert checkpoint("weights/sam2.pt") == str(tmp_path / "weights" / "sam2.pt")
    assert checkpoint("~/sam2") == str(Path.home() / "sam2")
    (tmp_path / "facebook" / "sam2.1-hiera-tiny").mkdir(parents=True)
    assert checkpoint("facebook/sam2.1-hiera-tiny") == str(tmp_path / "facebook" / "sam2.1-hiera-tiny")


def test_the_train_section_has_cpu_defaults_resolves_base_and_validates_every_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()), environ={})
    train = config.train
    assert (train.base, train.epochs, train.imgsz, train.batch, train.device) == (None, 20, 320, 8, "auto")
    assert (train.min_reviewed, train.every_n_annotations) == (10, 0)
    assert config.models_dir == config.cache.dir / "models"
    config = load_config(write(tmp_path, minimal(train={"base": "weights/yolo11n.pt", "device": "cuda:1"})), environ={})
    assert config.train.base == tmp_path / "weights" / "yolo11n.pt" and config.train.device == "cuda:1"
    for bad, expected in (({"epochs": 0}, "train.epochs: expected a positive integer, got 0"),
                          ({"device": "tpu"}, "train.device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
                          ({"every_n_annotations": -1}, "train.every_n_annotations: expected greater than or equal"),
                          ({"imgsz": 16}, "train.imgsz: expected greater than or equal to 32"),
                          ({"epoch": 3}, "train.epoch: unknown key")):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(write(tmp_path, minimal(train=bad)), environ={})


def test_detector_model_trained_is_a_name_not_a_path_and_takes_no_classes(tmp_path: Path) -> None:
    detect = {"mode": "detect", "default_label": "cat", "detector": {"model": "trained"}}
    config = load_config(write(tmp_path, minimal(preannotate=detect)), environ={})
    assert config.preannotate.detector is not None and config.preannotate.detector.model == "trained"
    assert config.preannotate.detector.trained
    detect["detector"] = {"model": "trained", "classes": {"cat": ["kitty"]}}
    with pytest.raises(ConfigError, match="model: trained is an Ultralytics model whose classes are the project"):
        load_config(write(tmp_path, minimal(preannotate=detect)), environ={})
