"""The Ultralytics trainer on a small hand-made YOLO folder with the real YOLO11n weights, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.learn.trainer import BaseWeightsError, EpochProgress
from batchlabel.learn.ultralytics_trainer import UltralyticsTrainer
from tests.learn.synthetic_shapes import synthesise, write_yolo_folder


@pytest.mark.slow
def test_it_fine_tunes_on_a_yolo_folder_reporting_each_epoch_with_a_clean_stdout(
        yolo11n: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_yaml = write_yolo_folder(synthesise(8, seed=3), tmp_path / "data")
    seen: list[EpochProgress] = []
    trainer = UltralyticsTrainer(settings_dir=tmp_path / "settings")
    result = trainer.train(data_yaml, yolo11n, tmp_path / "out", epochs=2, imgsz=160, device="cpu", batch=4,
                           on_epoch=seen.append)
    assert [(p.epoch, p.epochs) for p in seen] == [(1, 2), (2, 2)]
    assert seen[1].elapsed_s >= seen[0].elapsed_s > 0
    assert result.weights.is_file() and (tmp_path / "out") in result.weights.parents
    assert result.epochs == 2 and set(result.metrics) == {"mAP50", "mAP50-95"}
    assert all(0 <= value <= 1 for value in result.metrics.values())
    assert (tmp_path / "out" / "ultralytics.log").is_file()  # its console goes there, not to stdout
    assert capsys.readouterr().out == ""


def test_a_missing_or_corrupt_base_is_refused_naming_the_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    trainer = UltralyticsTrainer(settings_dir=tmp_path / "settings")
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(BaseWeightsError, match="nowhere.pt: train.base not found"):
        trainer.check_base(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 64)
    if __import__("importlib").util.find_spec("ultralytics") is None:
        pytest.skip("the batchlabel[ultralytics] extra is not installed (make install)")
    with pytest.raises(BaseWeightsError, match=r"corrupt.pt: train.base is not a loadable Ultralytics checkpoint"):
        trainer.check_base(corrupt)
